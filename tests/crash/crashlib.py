# SPDX-License-Identifier: MIT
"""Daemons, regions, workloads and checks for the crash tests.

Everything here waits with a timeout: a daemon that does not come up, does
not exit after its unmount, or a mount that does not answer is a failure
(with the daemon's thread stacks), never a hang.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from model import (Journal, describe_tree, diff, first_bad_offset, fmt, ops_between,
                   touched_paths)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(os.environ.get("SHMFS_BIN", REPO / "build" / "bin"))
PY = sys.executable or "/usr/bin/python3"
MiB = 1 << 20

SANITIZER = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
             "ERROR: ThreadSanitizer", "UndefinedBehaviorSanitizer")
ERROR_RE = re.compile(r"error", re.IGNORECASE)

# Lines for the end-of-session summary (conftest.py prints them).
SUMMARY = []

CTL_LOCK_OFF = 4096 + 64        # SHMFS_CTL_OFF + offsetof(struct shmfs_ctl, ctl_lock)
LOCK_OWNER_SHIFT = 48           # SHMFS_LOCK_OWNER_SHIFT: owner = host slot + 1
LOCK_GEN_MASK = (1 << LOCK_OWNER_SHIFT) - 1


class Failure(AssertionError):
    pass


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


def run(cmd, timeout=120, check=False, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    try:
        p = subprocess.run([str(c) for c in cmd], timeout=timeout, **kw)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"{' '.join(map(str, cmd))}: no exit within {timeout} s "
                      f"(stdout: {e.stdout!r:.2000})")
    if check and p.returncode != 0:
        raise Failure(f"{cmd} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def check_log(text):
    """Problems in a daemon's stderr: sanitizer reports, and any error or
    message of shmfs's own (it writes "shmfs: ..." only for errors,
    corruption and warnings)."""
    bad = []
    for line in text.splitlines():
        if any(m in line for m in SANITIZER) or ERROR_RE.search(line) or \
                line.startswith("shmfs:"):
            bad.append(line)
    return bad


def mountinfo():
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a, b = line.split(" - ", 1)
            fa, fb = a.split(), b.split()
            out[fa[4].encode().decode("unicode_escape")] = fb[0]
    return out


def backtrace(pid):
    if not shutil.which("gdb"):
        return "(no gdb)"
    try:
        p = run(["gdb", "-p", pid, "-batch", "-ex", "thread apply all bt"], timeout=90)
    except Failure as e:
        return str(e)
    return "\n".join(ln for ln in p.stdout.splitlines() if ln.startswith(("#", "Thread")))


def proc_state(pid):
    """The states of every thread of pid ('R', 'S', 'T', ...), [] if gone."""
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                st = Path(f"/proc/{pid}/task/{t}/stat").read_text()
                out.append(st.rsplit(")", 1)[1].split()[0])
            except OSError:
                pass
    except OSError:
        pass
    return out


def wait_stopped(pid, timeout=10.0):
    """After SIGSTOP: wait until every thread of pid has stopped."""
    t0 = time.monotonic()
    while True:
        st = proc_state(pid)
        if st and all(s in "tT" for s in st):
            return
        if not st:
            raise Failure(f"process {pid} vanished while being stopped")
        if time.monotonic() - t0 > timeout:
            raise Failure(f"process {pid} not stopped {timeout} s after SIGSTOP: {st}")
        time.sleep(0.0005)


def with_timeout(fn, timeout, what):
    """fn() in a helper thread; its result, or Failure if it raised or did
    not return within timeout (a mount that stopped answering)."""
    res = []

    def body():
        try:
            res.append((True, fn()))
        except BaseException as e:  # noqa: B902 -- reported to the caller
            res.append((False, e))

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    if not res:
        raise Failure(f"{what}: no answer within {timeout} s")
    ok, v = res[0]
    if not ok:
        if isinstance(v, AssertionError):
            raise v
        raise Failure(f"{what}: {v!r}") from v
    return v


# ---- regions ----------------------------------------------------------------------

class Region:
    def __init__(self, path):
        self.path = Path(path)

    def __str__(self):
        return str(self.path)

    @classmethod
    def make(cls, path, size, *args):
        run([BIN / "mkfs.shmfs", "-q", "-f", "--size", size, *args, path], check=True)
        return cls(path)

    def lock_word(self):
        with open(self.path, "rb") as f:
            return int.from_bytes(os.pread(f.fileno(), 8, CTL_LOCK_OFF), "little")

    def lock_owner_slot(self):
        """The host slot holding the metadata lock, or None."""
        owner = self.lock_word() >> LOCK_OWNER_SHIFT
        return owner - 1 if owner else None

    def dump(self):
        p = run([BIN / "shmfs-dump", "--json", self.path], timeout=60)
        if p.returncode not in (0, 1):
            raise Failure(f"shmfs-dump {self.path}: exit {p.returncode}: {p.stderr}")
        return json.loads(p.stdout)

    def slot_of(self, pid):
        for h in self.dump()["hosts"]:
            if h["state"] != "free" and h.get("pid") == pid:
                return h["slot"]
        raise Failure(f"no host slot names pid {pid}")

    def fsck(self, mode, timeout=180):
        """fsck.shmfs MODE --json: (exit status, document)."""
        p = run([BIN / "fsck.shmfs", mode, "--json", self.path], timeout=timeout)
        try:
            doc = json.loads(p.stdout)
        except ValueError:
            raise Failure(f"fsck.shmfs {mode} {self.path}: exit {p.returncode}, no JSON:\n"
                          f"{p.stdout}\n{p.stderr}")
        if doc.get("exit") != p.returncode:
            raise Failure(f"fsck.shmfs {mode}: exit {p.returncode}, JSON says {doc.get('exit')}")
        return p.returncode, doc

    def fsck_async(self, mode):
        return subprocess.Popen([str(BIN / "fsck.shmfs"), mode, "--json", str(self.path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def collect_fsck(proc, what, timeout=180):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise Failure(f"{what}: fsck.shmfs did not exit within {timeout} s")
    try:
        doc = json.loads(out)
    except ValueError:
        raise Failure(f"{what}: fsck.shmfs exit {proc.returncode}, no JSON:\n{out}\n{err}")
    return proc.returncode, doc


# What a host killed with SIGKILL may leave behind; anything else found in
# a region after such a crash is corruption.
def crash_residue(p):
    code, msg = p.get("code"), p.get("message", "")
    return ((code == "hs_heartbeat" and "stale lease" in msg) or
            (code == "ctl_lock" and "not live" in msg) or
            (code == "rl_ino" and "whose host is not live" in msg) or
            (code == "ex_foff" and "leaked preallocation" in msg) or
            (code == "lr_seq" and "bytes after the end are not zero" in msg))


def unexpected_problems(doc, allowed=crash_residue):
    bad = [p for p in doc.get("problems", []) if not allowed(p)]
    if doc.get("summary", {}).get("rejected"):
        bad.append({"code": "rejected", "message":
                    f"{doc['summary']['rejected']} records that replay rejects"})
    if doc.get("operational_error"):
        bad.append({"code": "operational_error", "message": json.dumps(doc)[:500]})
    return bad


def fmt_problems(probs, limit=12):
    lines = [f"  [{p.get('code')}] {p.get('location', '')}: {p.get('message', '')}"[:600]
             for p in probs[:limit]]
    if len(probs) > limit:
        lines.append(f"  ... and {len(probs) - limit} more")
    return "\n".join(lines)


def copy_region(src, dst):
    """A byte copy of a region file, in address order."""
    with open(src, "rb") as s, open(dst, "wb") as d:
        n = os.fstat(s.fileno()).st_size
        off = 0
        while off < n:
            k = os.copy_file_range(s.fileno(), d.fileno(), min(n - off, 8 * MiB), off, off)
            if k <= 0:
                raise Failure(f"copy of {src} stopped at {off}")
            off += k


# ---- daemons --------------------------------------------------------------------

class Daemon:
    def __init__(self, region, mnt, host, log):
        self.region, self.mnt, self.host, self.log = region, Path(mnt), host, Path(log)
        self.proc = None
        self.killed = False
        self.slot = None

    def __str__(self):
        return f"{self.host} ({self.mnt})"

    @property
    def pid(self):
        return self.proc.pid

    def logtext(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def mounted(self):
        return mountinfo().get(str(self.mnt)) == "fuse.shmfs"

    def spawn(self):
        self.mnt.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as lf:
            self.proc = subprocess.Popen(
                [str(BIN / "shmfs"), str(self.region), str(self.mnt), "-f", "-o",
                 f"host={self.host}"], stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
        return self

    def start(self, timeout=30.0):
        self.spawn()
        t0 = time.monotonic()
        while not self.mounted():
            if self.proc.poll() is not None:
                raise Failure(f"shmfs {self} exited ({self.proc.returncode}) before mounting:\n"
                              + self.logtext()[-3000:])
            if time.monotonic() - t0 > timeout:
                raise Failure(f"{self} not mounted after {timeout} s:\n{self.logtext()[-3000:]}"
                              + "\n" + backtrace(self.pid))
            time.sleep(0.005)
        # mounted before it serves (it joins the host table after mounting)
        left = max(1.0, timeout - (time.monotonic() - t0))
        try:
            with_timeout(lambda: os.stat(self.mnt), left, f"stat of {self}")
        except Failure as e:
            raise Failure(f"{e}\n{self.logtext()[-3000:]}\n{backtrace(self.pid)}")
        return self

    def signal(self, sig):
        os.kill(self.pid, sig)

    def kill9(self):
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise Failure(f"{self} still running 30 s after SIGKILL")

    def unmount(self, clean=True, timeout=30.0):
        """Unmount (lazily unless clean) and wait for the daemon to exit;
        a clean one must exit 0."""
        if self.mounted():
            p = run(["fusermount3", "-u", self.mnt], timeout=60) if clean else None
            if p is None or p.returncode != 0:
                run(["fusermount3", "-u", "-z", self.mnt], timeout=60)
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stacks = backtrace(self.pid)
            self.killed = True
            self.proc.kill()
            self.proc.wait(30)
            raise Failure(f"{self}: daemon still running {timeout} s after its unmount; "
                          f"its threads:\n{stacks}")
        if clean and not self.killed and self.proc.returncode != 0:
            raise Failure(f"{self}: daemon exited {self.proc.returncode} after a clean unmount:\n"
                          + self.logtext()[-3000:])

    def problems(self):
        bad = check_log(self.logtext())
        rc = self.proc.returncode if self.proc else None
        if rc is not None and rc < 0 and not self.killed:
            bad.append(f"died of signal {-rc}")
        return [f"{self}: {b}" for b in bad]


# ---- workloads ------------------------------------------------------------------

class Workload:
    """workload.py on a mount, in the directory root, with its journal."""

    def __init__(self, root, journal, seed, mode, tag, workdir, **opts):
        self.root, self.journal, self.seed, self.mode = Path(root), Path(journal), seed, mode
        self.tag = tag
        self.stop_file = Path(workdir) / f"{tag}.stop"
        self.stats_file = Path(workdir) / f"{tag}.stats"
        self.err_file = Path(workdir) / f"{tag}.err"
        self.opts = opts
        self.proc = None

    def start(self):
        for f in (self.stop_file, self.stats_file):
            if f.exists():
                f.unlink()
        args = [PY, str(HERE / "workload.py"), str(self.root), str(self.journal),
                "--seed", str(self.seed), "--mode", self.mode, "--stop", str(self.stop_file),
                "--stats", str(self.stats_file)]
        for k, v in self.opts.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        with open(self.err_file, "w") as ef:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=ef)
        return self

    def errtext(self):
        try:
            return self.err_file.read_text(errors="replace")
        except OSError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def check_running(self, what):
        if not self.running():
            raise Failure(f"{what}: the workload on {self.root} exited "
                          f"({self.proc.returncode}):\n{self.errtext()[-3000:]}")

    def wait(self, timeout=60.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            st = proc_state(self.proc.pid)
            stack = ""
            try:
                stack = Path(f"/proc/{self.proc.pid}/stack").read_text()
            except OSError:
                pass
            self.proc.kill()
            self.proc.wait(30)
            raise Failure(f"workload on {self.root} did not exit within {timeout} s "
                          f"(threads {st}); kernel stack:\n{stack}")

    def stop(self, timeout=120.0):
        """Ask it to finish its current operation and exit; it must exit 0."""
        self.stop_file.touch()
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
        rc = self.wait(timeout)
        if rc != 0:
            raise Failure(f"workload on {self.root} exited {rc}:\n{self.errtext()[-3000:]}")

    def stats(self):
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}


# ---- checks ---------------------------------------------------------------------

def verify(root, journal_path, resolve=True, timeout=180.0, what=""):
    """The tree under root must be the journal's committed state or, with an
    operation in flight, the state after it.  With resolve, the journal is
    told which (D or A), so that the next workload continues from it.
    Returns (label, number of names)."""
    j = Journal(journal_path)
    actual = with_timeout(lambda: describe_tree(root), timeout, f"reading {root}")
    results = []
    for label, m in j.candidates():
        exp = m.expected()
        d = diff(exp, actual)
        if not d:
            if resolve and j.inflight is not None:
                ok = label.startswith("with ")
                with open(journal_path, "a") as f:
                    f.write("%s %d\n" % ("D" if ok else "A", j.inflight[0]))
                    f.flush()
                    os.fsync(f.fileno())
            return label, len(actual)
        results.append((label, m, d))
    msg = [f"{what}{root} does not match its journal {journal_path} "
           f"({j.ops} operations committed):"]
    for label, m, d in results:
        msg.append(f" against the state {label}:")
        msg += d
        for p in [ln.split(":")[0].strip() for ln in d][:3]:
            node = m.nodes.get(p)
            if node and node[0] == "f" and os.path.isfile(os.path.join(root, p)):
                o = m.objs[node[1]]
                where = first_bad_offset(os.path.join(root, p), o["seed"], o["size"], o["zeros"])
                msg.append(f"    {p}: {where}")
    raise Failure("\n".join(msg))


def verify_stable(root, journal_path, start_len, end_len, timeout=180.0, what=""):
    """For a copy taken while the workload ran (journal lengths start_len
    before it began and end_len after it ended): every name whose state no
    operation of that window could touch must be there as committed before
    the copy.  Returns the number of names checked."""
    j = Journal(journal_path)       # read now: later operations do not matter
    with open(journal_path, "rb") as f:
        head = f.read(start_len)
    tmp = Path(str(journal_path) + ".at-copy")
    tmp.write_bytes(head)
    try:
        before = Journal(tmp)
    finally:
        tmp.unlink()
    del j
    touched = []
    window = ops_between(journal_path, start_len, end_len)
    for op, args in window:
        touched += touched_paths(op, args)
    # a change through one name of a file is a change through its others
    nodes = before.model.nodes
    objs = {nodes[t][1] for t in touched if t in nodes and nodes[t][0] == "f"}

    def affected(p):
        if p in nodes and nodes[p][0] == "f" and nodes[p][1] in objs:
            return True
        return any(p == t or p.startswith(t + "/") or t.startswith(p + "/") for t in touched)

    exp = before.model.expected()
    stable = {p: d for p, d in exp.items() if not affected(p)}
    actual = with_timeout(lambda: describe_tree(root), timeout, f"reading {root}")
    bad = []
    for p, d in sorted(stable.items()):
        a = actual.get(p)
        if a == d:
            continue
        if d[0] == "f" and a and a[0] == "f" and a[:4] == d[:4] and a[5] == d[5]:
            continue    # only nlink differs: a link made or removed in the window
        bad.append(f"  {p}: expected {fmt(d)}, found {fmt(a) if a else 'nothing'}")
        if d[0] == "f" and a:
            o = before.model.objs[nodes[p][1]]
            where = first_bad_offset(os.path.join(root, p), o["seed"], o["size"], o["zeros"])
            bad.append(f"    {where}; names of the inode: "
                       f"{[q for q, n in nodes.items() if n == nodes[p]]}")
    if bad:
        raise Failure(f"{what}{root}: names committed before the copy and untouched during it "
                      f"differ (journal {journal_path}, bytes {start_len}..{end_len}; operations "
                      f"in the window: {window[:30]}):\n" + "\n".join(bad[:20]))
    return len(stable)


def journal_len(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def probe(mnt, name, size=8192):
    """Create, write, read back, unlink a file through a mount; the seconds
    it took."""
    t0 = time.monotonic()
    p = os.path.join(mnt, name)
    data = os.urandom(size)
    with open(p, "wb") as f:
        f.write(data)
    with open(p, "rb") as f:
        if f.read() != data:
            raise Failure(f"probe {p}: read back different bytes")
    os.unlink(p)
    return time.monotonic() - t0
