# SPDX-License-Identifier: MIT
"""Fixtures for mounted shmfs: regions on /dev/shm, daemons that mount them,
and the checks every test gets for free at teardown.

    region            a 256 MiB region formatted in a fresh directory on
                      /dev/shm (removed afterwards); `make_region(...)` for
                      other sizes or mkfs options
    mounts            a factory: mounts(2) starts two daemons ("hosts") on
                      the region, each at its own mount point, and returns
                      Mount objects; every daemon is unmounted (lazily) and
                      reaped at teardown, whatever happened
    pair              (A, B): the same mount twice, or two mounts of one
                      region -- tests written against it run both ways
    wait_until        poll a predicate (cross-mount visibility)

At teardown a test fails if a daemon's stderr has sanitizer output or an
error message, if a daemon died of a signal, if it did not exit after its
unmount (the failure shows its threads' stacks), or if `fsck.shmfs -n` on
the unmounted region finds a problem or a rejected record (a killed
daemon's stale host slot excepted).  A test that provokes errors on
purpose says so with @pytest.mark.expect_errors; @pytest.mark.no_fsck
skips the fsck check.
"""
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SHMFS_BIN", REPO / "build" / "bin"))
MiB = 1 << 20

SANITIZER = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
             "ERROR: ThreadSanitizer", "UndefinedBehaviorSanitizer")
ERROR_RE = re.compile(r"error", re.IGNORECASE)

# Observed cross-mount visibility delays (seconds), reported at the end.
VISIBILITY = []


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (ctest label 'slow')")
    config.addinivalue_line(
        "markers", "expect_errors: the test provokes error messages from the daemon on purpose")
    config.addinivalue_line(
        "markers", "no_fsck: do not fsck the region at teardown (say why at the test)")


def pytest_terminal_summary(terminalreporter):
    if not VISIBILITY:
        return
    v = sorted(d for _, d in VISIBILITY)
    pct = lambda p: v[min(len(v) - 1, int(p * len(v)))] * 1000
    terminalreporter.write_line(
        f"cross-mount visibility: n={len(v)} min={v[0] * 1000:.1f} ms p50={pct(0.5):.1f} ms "
        f"p90={pct(0.9):.1f} ms p99={pct(0.99):.1f} ms max={v[-1] * 1000:.1f} ms")


# ---- helpers ------------------------------------------------------------------

def wait_until(pred, timeout=1.0, interval=0.001):
    """Poll pred() until it is true; return the elapsed seconds, or raise
    AssertionError after timeout (with pred's last value or exception)."""
    t0 = time.monotonic()
    last = None
    while True:
        try:
            last = pred()
            if last:
                return time.monotonic() - t0
        except OSError as e:  # e.g. ENOENT before the name is visible
            last = e
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not true within {timeout} s (last: {last!r})")
        time.sleep(interval)


def visible(what, pred, timeout=1.0):
    """wait_until for cross-mount visibility: records and prints the delay."""
    d = wait_until(pred, timeout)
    VISIBILITY.append((what, d))
    print(f"visibility[{what}]: {d * 1000:.1f} ms")
    return d


def exists(p):
    return os.path.lexists(p)


def mountinfo():
    """{mount point: (mount id, fstype, source)} from /proc/self/mountinfo."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a, b = line.split(" - ", 1)
            fa, fb = a.split(), b.split()
            mp = fa[4].encode().decode("unicode_escape")
            out[mp] = (int(fa[0]), fb[0], fb[1])
    return out


def run(cmd, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 60)
    p = subprocess.run([str(c) for c in cmd], **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def as_nobody(code, *args, check=False):
    """Run python code as uid/gid 65534 with no supplementary groups."""
    return run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "/usr/bin/python3", "-c", code, *args], check=check)


def check_log(text, expect_errors=False):
    """Problems in a daemon's stderr, as a list of lines: sanitizer reports
    always; unless errors are expected, any line with "error" and any
    message of shmfs's own (it writes "shmfs: ..." to stderr only to
    report errors, corruption and warnings)."""
    bad = []
    for line in text.splitlines():
        if any(m in line for m in SANITIZER):
            bad.append(line)
        elif not expect_errors and (ERROR_RE.search(line) or line.startswith("shmfs:")):
            bad.append(line)
    return bad


def pids_of_mount(mnt):
    """Processes whose command line names mnt (our own daemons only)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"shmfs") and str(mnt).encode() in cmd:
            found.append(int(d))
    return found


def backtrace(pid):
    """Every thread's stack of a (stuck) process, for the failure message."""
    if not shutil.which("gdb"):
        return "(no gdb)"
    p = run(["gdb", "-p", pid, "-batch", "-ex", "thread apply all bt"], check=False, timeout=60)
    return "\n".join(ln for ln in p.stdout.splitlines() if ln.startswith(("#", "Thread")))


def pid_alive(pid):
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return st.rsplit(")", 1)[1].split()[0] != "Z"


# ---- regions ------------------------------------------------------------------

def fsck_problems(reg, ignore=()):
    """fsck.shmfs -n on an unmounted region: [] when clean (but for the
    problem codes in ignore) and every record in the log applied (none
    rejected)."""
    import json
    fsck = BIN / "fsck.shmfs"
    if not os.access(fsck, os.X_OK):
        return []
    p = run([fsck, "-n", "--json", reg.path], check=False, timeout=120)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        return [f"fsck.shmfs -n {reg.path}: exit {p.returncode}, no JSON:\n{p.stdout}{p.stderr}"]
    out = []
    found = [x for x in doc.get("problems", []) if x.get("code") not in ignore]
    if found or (p.returncode != 0 and not doc.get("problems")):
        out.append(f"fsck.shmfs -n {reg.path}: exit {p.returncode}: "
                   + json.dumps(found, indent=1)[:3000])
    if doc.get("summary", {}).get("rejected"):
        out.append(f"fsck.shmfs -n {reg.path}: {doc['summary']['rejected']} rejected records in the log")
    return out


class Region:
    def __init__(self, path):
        self.path = Path(path)

    def __str__(self):
        return str(self.path)

    def dump(self):
        import json
        p = run([BIN / "shmfs-dump", "--json", self.path], check=False)
        assert p.returncode in (0, 1), p.stderr
        return json.loads(p.stdout)

    def hosts(self):
        """Host slots in use: [(slot, state, name, pid)]."""
        return [(h["slot"], h["state"], h["name"], h.get("pid"))
                for h in self.dump()["hosts"] if h["state"] != "free"]


@pytest.fixture(scope="session")
def bindir():
    for tool in ("shmfs", "mkfs.shmfs", "shmfs-dump"):
        if not os.access(BIN / tool, os.X_OK):
            pytest.fail(f"{BIN / tool} is not built (set SHMFS_BIN to the build's bin directory)")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    return BIN


@pytest.fixture
def shm_dir(bindir):
    """A fresh directory on /dev/shm, removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="shmfs-mt-", dir="/dev/shm"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_region(shm_dir):
    made = []

    def make(size="256M", *mkfs_args):
        path = shm_dir / f"region-{uuid.uuid4().hex[:8]}.img"
        run([BIN / "mkfs.shmfs", "-q", "-f", "--size", size, *mkfs_args, path])
        made.append(path)
        return Region(path)

    return make


@pytest.fixture
def region(make_region):
    return make_region()


# ---- mounts -------------------------------------------------------------------

def ready(m, timeout):
    """Wait (in a helper thread, so a hung daemon cannot hang the test)
    until a stat of m's root succeeds; None, or what went wrong."""
    res = []

    def probe():
        try:
            os.stat(m.path)
            res.append(None)
        except OSError as e:
            res.append(repr(e))

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(max(timeout, 0.1))
    if not res:
        return f"stat of the root still blocked after {timeout:.1f} s"
    if res[0] is None and m.proc.poll() is not None:
        return f"daemon exited ({m.proc.returncode})"
    return res[0]


class Mount:
    def __init__(self, region, path, host, opts, log):
        self.region, self.path, self.host, self.opts, self.log = region, Path(path), host, opts, log
        self.proc = None
        self.killed = False          # the test killed it on purpose
        self.unmounted = False

    def __truediv__(self, other):
        return self.path / other

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return str(self.path)

    def logtext(self):
        try:
            return Path(self.log).read_text(errors="replace")
        except OSError:
            return ""

    def mounted(self):
        mi = mountinfo().get(str(self.path))
        return bool(mi and mi[1] == "fuse.shmfs")

    def unmount(self, timeout=10):
        """Unmount lazily and wait for the daemon to exit."""
        if not self.unmounted:
            self.unmounted = True
            if self.mounted():
                run(["fusermount3", "-u", "-z", self.path], check=False)
        if self.proc:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        return True

    def kill(self, sig=signal.SIGKILL):
        self.killed = True
        self.proc.send_signal(sig)
        self.proc.wait(10)


@pytest.fixture
def mnt_base():
    """Mount points live in a world-traversable directory (tests run
    programs as nobody through them)."""
    d = Path(tempfile.mkdtemp(prefix="shmfs-mnt-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mounts(request, region, mnt_base):
    """mounts(n=1, opts=(), reg=None, one=False, wait=True) -> [Mount] (one
    Mount if one=True); wait=False returns as soon as the daemon started."""
    started = []
    expect_errors = request.node.get_closest_marker("expect_errors") is not None
    counter = [0]

    def start(n=1, opts=(), reg=None, one=False, timeout=10.0, wait=True):
        reg = reg or region
        out = []
        for _ in range(n):
            i = counter[0]
            counter[0] += 1
            path = mnt_base / f"m{i}"
            path.mkdir()
            host = f"h{i}"
            o = ",".join([f"host={host}", *opts])
            log = mnt_base / f"m{i}.log"
            m = Mount(reg, path, host, o, log)
            with open(log, "wb") as lf:
                m.proc = subprocess.Popen([str(BIN / "shmfs"), str(reg), str(path), "-f", "-o", o],
                                          stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
            started.append(m)
            t0 = time.monotonic()
            while wait and not m.mounted():
                if m.proc.poll() is not None:
                    pytest.fail(f"shmfs exited ({m.proc.returncode}) before mounting {path}:\n"
                                + m.logtext())
                if time.monotonic() - t0 > timeout:
                    pytest.fail(f"{path} not mounted after {timeout} s:\n" + m.logtext())
                time.sleep(0.005)
            if wait:
                # The mount appears before the daemon serves it (it joins the
                # host table after mounting): a stat of the root waits for that.
                err = ready(m, timeout - (time.monotonic() - t0))
                if err:
                    pytest.fail(f"{path} mounted but not served: {err}\n" + m.logtext())
            out.append(m)
        return out[0] if one else out

    yield start

    problems = []
    for m in reversed(started):
        if not m.unmount():
            problems.append(f"{m.host}: daemon still running 10 s after unmount; its threads:\n"
                            + backtrace(m.proc.pid))
            m.killed = True
            m.proc.kill()
            m.proc.wait()
    for m in started:
        rc = m.proc.returncode
        if rc is not None and rc < 0 and not m.killed:
            problems.append(f"{m.host}: daemon died of signal {-rc}")
        bad = check_log(m.logtext(), expect_errors)
        if bad:
            problems.append(f"{m.host}: daemon log:\n" + "\n".join(bad))
    # Whatever a test did, the region it leaves must check clean, and no
    # daemon may have written a record that replay rejects.
    if not problems and not request.node.get_closest_marker("no_fsck"):
        # a killed daemon leaves what a crash leaves: its stale host slot
        crashed = any(m.killed for m in started)
        for reg in {str(m.region): m.region for m in started}.values():
            problems += fsck_problems(reg, ignore=("hs_heartbeat",) if crashed else ())
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def mnt(mounts):
    """One mount."""
    return mounts(1, one=True)


@pytest.fixture(params=["one-mount", "two-mounts"])
def pair(request, mounts):
    """(A, B): make a change through A, observe it through B."""
    if request.param == "one-mount":
        a = mounts(1, one=True)
        return a, a
    a, b = mounts(2)
    return a, b


def see(pair_, what, pred, timeout=1.0):
    """Wait for pred on B: at once on one mount, within timeout across two."""
    a, b = pair_
    if a is b:
        assert pred(), f"{what}: not true on the same mount"
        return 0.0
    return visible(what, pred, timeout)


def read_bytes(p):
    with open(p, "rb") as f:
        return f.read()


def write_bytes(p, data, mode="wb"):
    with open(p, mode) as f:
        f.write(data)


def df(path):
    s = os.statvfs(path)
    return s.f_bfree * s.f_frsize, s.f_blocks * s.f_frsize, s


def tree(root):
    """Everything about a tree that a test compares: {relpath: tuple}."""
    out = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            fmt = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(fmt):
                extra = read_bytes(p)
            elif stat.S_ISLNK(fmt):
                extra = os.readlink(p)
            else:
                extra = None
            out[rel] = (fmt, stat.S_IMODE(st.st_mode), st.st_nlink,
                        st.st_size if not stat.S_ISDIR(fmt) else None, extra)
    return out
