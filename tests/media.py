# SPDX-License-Identifier: MIT
"""The on-media format for the Python tests: constants and layouts from
include/shmfs/format.h, XXH3-64 checksums (the system libxxhash, the library
shmfs links, through ctypes), and an editor that writes structures into a
formatted region the way the core library does -- records, seals, host
slots, resealed superblocks -- so tests can build regions mkfs and the
daemon never produce.  Tests that need checksums skip if libxxhash cannot
be loaded.
"""
import ctypes
import ctypes.util
import hashlib
import struct
from pathlib import Path

import pytest

PAGE = 4096
SB_MAGIC = 0x31425353464D4853
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

# Offsets of the superblock fields the tests use.
SB_FIELDS = {
    "magic": (0, "Q"), "version": (8, "I"), "flags": (12, "I"),
    "feature_incompat": (32, "Q"), "region_size": (120, "Q"), "map_align": (128, "Q"),
    "alloc_unit": (136, "Q"), "max_hosts": (160, "I"), "log_off": (168, "Q"),
    "log_size": (176, "Q"), "data_off": (192, "Q"), "data_size": (200, "Q"),
    "log_seed": (208, "Q"), "mkfs_time": (216, "Q"), "lease_ms": (224, "I"),
    "checksum": (504, "Q"),
}

# struct shmfs_host, and the fields its identity checksum leaves out
# (zeroed before hashing; shmfs_host_ident_csum)
HOST_FMT = "<QQQQQIIQII64s64s16s4QQQ"
HOST_IDENT_SEED = 0x486F7374
HOST_NOT_IDENT = ((8, 8), (16, 8), (24, 8), (32, 8), (40, 4), (44, 4), (208, 32), (240, 8),
                  (248, 8))


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
    """Bytes a record with a payload of plen bytes occupies in the log."""
    return (LR_HDR + plen + 7) & ~7


def host_ident_csum(slot):
    ident = bytearray(slot)
    for off, n in HOST_NOT_IDENT:
        ident[off:off + n] = bytes(n)
    return xxh3(ident, HOST_IDENT_SEED)


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


class Region:
    """Read and write a formatted region in place (at offset in its file)."""

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

    # superblock
    def read_super(self, off):
        raw = self.read(off, SB_SIZE)
        sb = {k: struct.unpack_from("<" + t, raw, o)[0] for k, (o, t) in SB_FIELDS.items()}
        sb["raw"] = bytearray(raw)
        return sb

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

    def create(self, ino, name, parent=1, mode=S_IFREG | 0o644):
        return self.append(LR_CREATE, p_create(ino, parent, mode, name))

    def seal(self):
        """Seal the next slot as a lock breaker would; returns its pos."""
        pos, seq = self.log_end()
        self.log_write(pos, struct.pack("<Q", LR_SEAL | seq))
        return pos

    # host table and control page
    def write_host(self, i, state, token=0x1234, name=b"ghost", hostname=b"node", pid=42,
                   heartbeat=7, heartbeat_ns=None, applied=1, pin=0, flags=0,
                   mount_ns=None, good_ident=True):
        now = self.sb["mkfs_time"]
        slot = bytearray(struct.pack(
            HOST_FMT, token, heartbeat, now if heartbeat_ns is None else heartbeat_ns, applied,
            pin, state, flags, now if mount_ns is None else mount_ns, pid, 0, name, hostname,
            b"\x01" * 16, 0, 0, 0, 0, 0, 0))
        csum = host_ident_csum(slot)
        struct.pack_into("<Q", slot, 240, csum if good_ident else csum ^ 1)
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


# ---- record payloads (struct layouts from format.h) --------------------------

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
