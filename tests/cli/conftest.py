# SPDX-License-Identifier: MIT
"""Fixtures for the command-line tools: where they are, scratch regions on
/dev/shm, and a small editor that writes on-media structures (records, host
slots, resealed superblocks) the way the core library does, so tests can
build logs that mkfs alone never produces.

Checksums are XXH3-64 from the system libxxhash (the library shmfs links),
loaded with ctypes; tests that need it skip if it cannot be loaded.
"""
import ctypes
import ctypes.util
import hashlib
import json
import os
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# ---- format constants (include/shmfs/format.h) -------------------------

PAGE = 4096
SB_MAGIC = 0x31425353464D4853
SB_SIZE = 512
BACKUP_OFF = 8192
HOSTS_OFF = 12288
HOST_SLOT = 256
LR_HDR = 40
LR_SEAL = 1 << 63
SEAL_SKIP = 128 * 1024

LR_NOOP, LR_CREATE, LR_LINK, LR_UNLINK, LR_RMDIR, LR_RENAME, LR_SETATTR = range(7)
LR_EXTENT_MAP, LR_EXTENT_UNMAP, LR_XATTR_SET, LR_XATTR_REMOVE = range(7, 11)

HOST_FREE, HOST_JOINING, HOST_ACTIVE, HOST_TOOL = range(4)

# Offsets of superblock fields used here.
SB_FIELDS = {
    "magic": (0, "Q"), "version": (8, "I"), "flags": (12, "I"),
    "feature_incompat": (32, "Q"), "region_size": (120, "Q"), "map_align": (128, "Q"),
    "alloc_unit": (136, "Q"), "max_hosts": (160, "I"), "log_off": (168, "Q"),
    "log_size": (176, "Q"), "data_off": (192, "Q"), "data_size": (200, "Q"),
    "log_seed": (208, "Q"), "mkfs_time": (216, "Q"), "checksum": (504, "Q"),
}


# ---- xxh3 -----------------------------------------------------------------

def _load_xxh3():
    for name in ("libxxhash.so.0", ctypes.util.find_library("xxhash")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            fn = lib.XXH3_64bits_withSeed
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


# ---- running the tools ----------------------------------------------------

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")

class Tools:
    def __init__(self, bindir):
        self.bindir = Path(bindir)
        self.mkfs_path = self.bindir / "mkfs.shmfs"
        self.dump_path = self.bindir / "shmfs-dump"

    def run(self, exe, *args, timeout=60):
        p = subprocess.run([str(exe), *map(str, args)], capture_output=True, timeout=timeout)
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        # A sanitizer build reports through stderr (and may exit 1, which
        # tests of corrupt regions expect anyway): never let that pass.
        for marker in SANITIZER_MARKERS:
            assert marker not in p.err, f"{exe.name} {list(args)}:\n{p.err}"
        assert p.returncode >= 0, f"{exe.name} {list(args)} died of signal {-p.returncode}"
        return p

    def mkfs(self, *args, **kw):
        return self.run(self.mkfs_path, *args, **kw)

    def dump(self, *args, **kw):
        return self.run(self.dump_path, *args, **kw)

    def dump_json(self, *args, **kw):
        p = self.dump("--json", *args, **kw)
        assert p.returncode in (0, 1), (p.returncode, p.err)
        p.doc = json.loads(p.stdout)  # must be valid JSON whatever the region holds
        return p


@pytest.fixture(scope="session")
def bindir():
    d = Path(os.environ.get("SHMFS_BIN", REPO / "build" / "bin"))
    for tool in ("mkfs.shmfs", "shmfs-dump"):
        if not os.access(d / tool, os.X_OK):
            pytest.fail(f"{d / tool} is not built (set SHMFS_BIN to the build's bin directory)")
    return d


@pytest.fixture(scope="session")
def tools(bindir):
    return Tools(bindir)


def _scratch_dir():
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


@pytest.fixture
def region(tmp_path):
    """Path of a region file that does not exist yet, on /dev/shm (tmpfs)
    when possible; removed afterwards."""
    base = _scratch_dir() or tmp_path
    path = base / f"shmfs-cli-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    yield path
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def make_file(path, size, fill=None):
    """A sparse file of size bytes; fill (bytes) is written at offset 0."""
    with open(path, "wb") as f:
        f.truncate(size)
        if fill:
            f.write(fill)


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# ---- editing a formatted region --------------------------------------------

def stride(plen):
    return (LR_HDR + plen + 7) & ~7


class Region:
    """Read and write a formatted region in place, at the spec's offset."""

    def __init__(self, path, offset=0):
        self.path = Path(path)
        self.offset = offset
        self.sb = self.read_super(0)

    def read(self, off, n):
        with open(self.path, "rb") as f:
            f.seek(self.offset + off)
            return f.read(n)

    def write(self, off, data):
        with open(self.path, "r+b") as f:
            f.seek(self.offset + off)
            f.write(bytes(data))

    def read_super(self, off):
        raw = self.read(off, SB_SIZE)
        sb = {k: struct.unpack_from("<" + t, raw, o)[0] for k, (o, t) in SB_FIELDS.items()}
        sb["raw"] = bytearray(raw)
        return sb

    # superblock
    def patch_super(self, which=("primary", "backup"), reseal=True, **fields):
        for w in which:
            off = 0 if w == "primary" else BACKUP_OFF
            raw = bytearray(self.read(off, SB_SIZE))
            for k, v in fields.items():
                o, t = SB_FIELDS[k]
                struct.pack_into("<" + t, raw, o, v)
            if reseal:
                struct.pack_into("<Q", raw, 504, xxh3(raw[:504], 0))
            self.write(off, raw)
        self.sb = self.read_super(0)

    # log
    def log_write(self, pos, data):
        self.write(self.sb["log_off"] + pos, data)

    def log_read(self, pos, n):
        return self.read(self.sb["log_off"] + pos, n)

    def log_end(self):
        """(pos, next seq) after the last published record."""
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

    def record_bytes(self, seq, rtype, payload, flags=0, host=0, time_ns=None, lock_gen=0):
        if time_ns is None:
            time_ns = self.sb["mkfs_time"] + seq * 1000
        hdr = struct.pack("<QHHIHHIQ", seq, rtype, flags, len(payload), host, 0, lock_gen,
                          time_ns)
        csum = xxh3(hdr, xxh3(payload, self.sb["log_seed"]))
        rec = hdr + struct.pack("<Q", csum) + payload
        return rec + b"\0" * (stride(len(payload)) - len(rec))

    def append(self, rtype, payload, **kw):
        """Publish one record after the last; returns (pos, seq)."""
        pos, seq = self.log_end()
        self.log_write(pos, self.record_bytes(seq, rtype, payload, **kw))
        return pos, seq

    def seal(self):
        """Seal the next slot as a lock breaker would; returns its pos."""
        pos, seq = self.log_end()
        self.log_write(pos, struct.pack("<Q", LR_SEAL | seq))
        return pos

    # host table
    def write_host(self, i, state, token=0x1234, name=b"h", hostname=b"node", pid=42,
                   heartbeat=7, heartbeat_ns=None, applied=1, pin=0, flags=0,
                   mount_ns=None, good_ident=True):
        now = self.sb["mkfs_time"]
        slot = bytearray(struct.pack(
            "<QQQQQIIQII64s64s16s4QQQ", token, heartbeat,
            now if heartbeat_ns is None else heartbeat_ns, applied, pin, state, flags,
            now if mount_ns is None else mount_ns, pid, 0, name, hostname, b"\x01" * 16,
            0, 0, 0, 0, 0, 0))
        ident = bytearray(slot)
        for off, n in ((8, 8), (16, 8), (24, 8), (32, 8), (40, 4), (44, 4), (208, 32), (240, 8), (248, 8)):
            ident[off:off + n] = b"\0" * n
        csum = xxh3(ident, 0x486F7374)
        struct.pack_into("<Q", slot, 240, csum if good_ident else csum ^ 1)
        self.write(HOSTS_OFF + i * HOST_SLOT, slot)


# payload builders (struct layouts from format.h)

def p_create(ino, parent, mode, name, uid=0, gid=0, target=b"", rdev=0):
    return struct.pack("<QQIIIIQHHI", ino, parent, mode, uid, gid, 0, rdev, len(name),
                       len(target), 0) + name + target


def p_link(ino, dir_, name):
    return struct.pack("<QQH6x", dir_, ino, len(name)) + name  # ln_dir first, like unlink


def p_unlink(dir_, ino, name):
    return struct.pack("<QQH6x", dir_, ino, len(name)) + name


def p_rename(olddir, oldname, newdir, newname, ino, target=0, flags=0):
    return struct.pack("<QQQQIHH", olddir, newdir, ino, target, flags, len(oldname),
                       len(newname)) + oldname + newname


def p_setattr(ino, valid, mode=0, uid=0, gid=0, size=0, atime=(0, 0), mtime=(0, 0),
              ctime=(0, 0)):
    return struct.pack("<QIIIIQ", ino, valid, mode, uid, gid, size) + b"".join(
        struct.pack("<qII", s, ns, 0) for s, ns in (atime, mtime, ctime))


def p_extent(ino, foff, doff, length, size=0):
    return struct.pack("<QQQQQ", ino, foff, doff, length, size)


def p_xattr(ino, name, value=b"", flags=0):
    return struct.pack("<QIIH6x", ino, flags, len(value), len(name)) + name + value


@pytest.fixture
def formatted(tools, region):
    """A 64 MiB region formatted with a known label and UUID."""
    p = tools.mkfs("--size", "64M", "-L", "test", "-U",
                   "01234567-89ab-cdef-0123-456789abcdef", "-q", region)
    assert p.returncode == 0, p.err
    return region
