# SPDX-License-Identifier: MIT
"""Fixtures for fsck.shmfs: the programs, scratch regions on /dev/shm, an
editor that writes on-media structures the way the core library does (the
approach of tests/cli/conftest.py: XXH3 from the system libxxhash through
ctypes), and mounted daemons that are always unmounted (lazily) and reaped.
"""
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SHMFS_BIN", REPO / "build" / "bin"))

# ---- format constants (include/shmfs/format.h) ------------------------------

PAGE = 4096
SB_SIZE = 512
CTL_OFF = 4096
BACKUP_OFF = 8192
HOSTS_OFF = 12288
HOST_SLOT = 256
LR_HDR = 40
LR_SEAL = 1 << 63
SEAL_SKIP = 128 * 1024
LOCK_SHIFT = 48

(LR_NOOP, LR_CREATE, LR_LINK, LR_UNLINK, LR_RMDIR, LR_RENAME, LR_SETATTR, LR_EXTENT_MAP,
 LR_EXTENT_UNMAP, LR_XATTR_SET, LR_XATTR_REMOVE, LR_RELEASE) = range(12)
HOST_FREE, HOST_JOINING, HOST_ACTIVE, HOST_TOOL = range(4)
F_KEEP = 1
S_IFREG, S_IFDIR = 0o100000, 0o040000

SB_FIELDS = {
    "magic": (0, "Q"), "version": (8, "I"), "alloc_unit": (136, "Q"), "max_hosts": (160, "I"),
    "log_off": (168, "Q"), "log_size": (176, "Q"), "data_off": (192, "Q"),
    "data_size": (200, "Q"), "log_seed": (208, "Q"), "mkfs_time": (216, "Q"),
    "lease_ms": (224, "I"), "checksum": (504, "Q"),
}

# fsck(8) exit codes
OK, CORRECTED, UNCORRECTED, OPERATIONAL, USAGE = 0, 1, 4, 8, 16

SANITIZER = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
             "runtime error:")


def _load_xxh3():
    for name in ("libxxhash.so.0", ctypes.util.find_library("xxhash")):
        if not name:
            continue
        try:
            fn = ctypes.CDLL(name).XXH3_64bits_withSeed
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_uint64
        fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
        return fn
    return None


_XXH3 = _load_xxh3()


def xxh3(data, seed=0):
    if _XXH3 is None:
        pytest.skip("libxxhash not loadable: cannot compute shmfs checksums")
    data = bytes(data)
    return _XXH3(data, len(data), seed & 0xFFFFFFFFFFFFFFFF)


def stride(plen):
    return (LR_HDR + plen + 7) & ~7


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


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


# ---- editing a formatted region ------------------------------------------------

class Region:
    """Read and write a formatted region in place."""

    def __init__(self, path):
        self.path = Path(path)
        self.sb = self.read_super(0)

    def read(self, off, n):
        with open(self.path, "rb") as f:
            f.seek(off)
            return f.read(n)

    def write(self, off, data):
        with open(self.path, "r+b") as f:
            f.seek(off)
            f.write(bytes(data))

    def read_super(self, off):
        raw = self.read(off, SB_SIZE)
        return {k: struct.unpack_from("<" + t, raw, o)[0] for k, (o, t) in SB_FIELDS.items()}

    def log_write(self, pos, data):
        self.write(self.sb["log_off"] + pos, data)

    def log_read(self, pos, n):
        return self.read(self.sb["log_off"] + pos, n)

    def records(self):
        """[(pos, seq, type, plen)] of the published chain, following seals."""
        out, pos = [], 0
        while pos + LR_HDR <= self.sb["log_size"]:
            word, = struct.unpack("<Q", self.log_read(pos, 8))
            if word == 0:
                break
            if word & LR_SEAL:
                pos += SEAL_SKIP
                continue
            rtype, _, plen = struct.unpack("<HHI", self.log_read(pos + 8, 8))
            out.append((pos, word, rtype, plen))
            pos += stride(plen)
        return out

    def log_end(self):
        pos, seq = 0, 1
        while pos + LR_HDR <= self.sb["log_size"]:
            word, = struct.unpack("<Q", self.log_read(pos, 8))
            if word == 0:
                break
            if word & LR_SEAL:
                pos += SEAL_SKIP
                continue
            plen, = struct.unpack("<I", self.log_read(pos + 12, 4))
            pos += stride(plen)
            seq = word + 1
        return pos, seq

    def record_bytes(self, seq, rtype, payload, flags=0, host=0):
        hdr = struct.pack("<QHHIHHIQ", seq, rtype, flags, len(payload), host, 0, 0,
                          self.sb["mkfs_time"] + seq * 1000)
        csum = xxh3(hdr, xxh3(payload, self.sb["log_seed"]))
        rec = hdr + struct.pack("<Q", csum) + payload
        return rec + b"\0" * (stride(len(payload)) - len(rec))

    def append(self, rtype, payload, **kw):
        pos, seq = self.log_end()
        self.log_write(pos, self.record_bytes(seq, rtype, payload, **kw))
        return pos, seq

    def create(self, ino, name, parent=1, mode=S_IFREG | 0o644):
        return self.append(LR_CREATE, p_create(ino, parent, mode, name))

    def write_host(self, i, state, token=0x1234, name=b"ghost", hostname=b"node", pid=42,
                   heartbeat=7, mount_ns=None):
        now = self.sb["mkfs_time"]
        slot = bytearray(struct.pack(
            "<QQQQQIIQII64s64s16s4QQQ", token, heartbeat, now, 1, 0, state, 0,
            now if mount_ns is None else mount_ns, pid, 0, name, hostname, b"\x01" * 16,
            0, 0, 0, 0, 0, 0))
        ident = bytearray(slot)
        for off, n in ((8, 8), (16, 8), (24, 8), (32, 8), (40, 4), (44, 4), (208, 32), (240, 8), (248, 8)):
            ident[off:off + n] = b"\0" * n
        struct.pack_into("<Q", slot, 240, xxh3(ident, 0x486F7374))
        self.write(HOSTS_OFF + i * HOST_SLOT, slot)

    def host(self, i):
        raw = self.read(HOSTS_OFF + i * HOST_SLOT, HOST_SLOT)
        token, beat = struct.unpack_from("<QQ", raw, 0)
        state, = struct.unpack_from("<I", raw, 40)
        return {"token": token, "heartbeat": beat, "state": state, "raw": raw}

    def lock_word(self):
        return struct.unpack("<Q", self.read(CTL_OFF + 64, 8))[0]

    def set_lock(self, word):
        self.write(CTL_OFF + 64, struct.pack("<Q", word))


def p_create(ino, parent, mode, name, target=b""):
    return struct.pack("<QQIIIIQHHI", ino, parent, mode, 0, 0, 0, 0, len(name), len(target),
                       0) + name + target


def p_unlink(dir_, ino, name):
    return struct.pack("<QQH6x", dir_, ino, len(name)) + name


def p_extent(ino, foff, doff, length, size=0):
    return struct.pack("<QQQQQ", ino, foff, doff, length, size)


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
