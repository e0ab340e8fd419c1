# SPDX-License-Identifier: MIT
"""Fixtures for fsck.shmfs: the programs, scratch regions on /dev/shm, and
mounted daemons that are always unmounted (lazily) and reaped.  The
on-media editor the tests use (Region, record payloads, XXH3) is
tests/media.py.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SHMFS_BIN", REPO / "build" / "bin"))
sys.path.insert(0, str(REPO / "tests"))  # media.py: the on-media format and editor

from media import Region  # noqa: E402

# fsck(8) exit codes
OK, CORRECTED, UNCORRECTED, OPERATIONAL, USAGE = 0, 1, 4, 8, 16

SANITIZER = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
             "runtime error:")


# ---- running programs ---------------------------------------------------------

class Result:
    def __init__(self, p, args):
        self.args = args
        self.rc = p.returncode
        self.out = p.stdout.decode("utf-8", "replace")
        self.err = p.stderr.decode("utf-8", "replace")
        self.doc = None

    def __repr__(self):
        return f"<{self.args} exit {self.rc}>\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run(exe, *args, timeout=300, input=None):
    cmd = [str(BIN / exe), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL if input is None else None, input=input)
    r = Result(p, [exe, *map(str, args)])
    for m in SANITIZER:
        assert m not in r.err, repr(r)
    assert r.rc >= 0, f"{exe} died of signal {-r.rc}: {r!r}"
    return r


def fsck(*args, **kw):
    r = run("fsck.shmfs", *args, **kw)
    if "--json" in args:
        r.doc = json.loads(r.out)  # always one valid document
        assert r.doc["exit"] == r.rc, repr(r)
    return r


def codes(r):
    """The problem codes of a --json run (first pass only)."""
    return [p["code"] for p in r.doc["problems"] if not p["after_repair"]]


def check_fixed(region, *expect_codes, mode="-y", exit_code=CORRECTED):
    """-n finds the problems, `mode` repairs them, -n is then clean."""
    r = fsck("-n", "--json", region)
    assert r.rc == UNCORRECTED, repr(r)
    for c in expect_codes:
        assert c in codes(r), (c, repr(r))
    r2 = fsck(mode, "--json", region)
    assert r2.rc == exit_code, repr(r2)
    r3 = fsck("-n", region)
    assert r3.rc == OK, repr(r3)
    return r, r2


@pytest.fixture(scope="session")
def bindir():
    for tool in ("fsck.shmfs", "mkfs.shmfs", "shmfs-dump", "fsck-test-helper"):
        if not os.access(BIN / tool, os.X_OK):
            pytest.fail(f"{BIN / tool} is not built (set SHMFS_BIN to the build's bin directory)")
    return BIN


@pytest.fixture
def scratch(bindir):
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    d = Path(tempfile.mkdtemp(prefix="shmfs-fsck-", dir=base))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_region(scratch):
    def make(size="64M", *mkfs_args):
        path = scratch / f"region-{uuid.uuid4().hex[:8]}.img"
        r = run("mkfs.shmfs", "-q", "--size", size, *mkfs_args, path)
        assert r.rc == 0, repr(r)
        return path
    return make


@pytest.fixture
def region(make_region):
    return make_region()


def populate(path, n=10, first_ino=2, prefix=b"file"):
    """n files in the root, one CREATE record each; returns (Region, names)."""
    r = Region(path)
    names = []
    for i in range(n):
        name = prefix + b"%03d" % i
        r.create(first_ino + i, name)
        names.append(name.decode())
    return r, names


# ---- mounted daemons -------------------------------------------------------------

def mounted(mnt):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(mnt) for line in f)


class Daemon:
    def __init__(self, region, mnt, *opts):
        self.mnt = Path(mnt)
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.log = open(self.mnt.parent / (self.mnt.name + ".log"), "w+")
        self.proc = subprocess.Popen([str(BIN / "shmfs"), str(region), str(self.mnt), "-f",
                                      *opts], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        t0 = time.monotonic()
        while not mounted(self.mnt):
            if self.proc.poll() is not None:
                raise AssertionError(f"shmfs exited {self.proc.returncode}: {self.output()}")
            if time.monotonic() - t0 > 10:
                self.stop()
                raise AssertionError("shmfs did not mount within 10 s")
            time.sleep(0.01)

    def output(self):
        with open(self.log.name) as f:
            return f.read()

    def listdir(self, sub=""):
        return sorted(os.listdir(self.mnt / sub))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)

    def stop(self):
        if self.proc.returncode is not None and self.log.closed:
            return
        if mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def daemons(scratch):
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        pytest.skip("no FUSE here")
    started = []

    def start(region, *opts):
        d = Daemon(region, scratch / f"mnt{len(started)}", *opts)
        started.append(d)
        return d
    yield start
    for d in started:
        d.stop()
        for m in SANITIZER:
            assert m not in d.output(), d.output()
