# SPDX-License-Identifier: MIT
"""A hostile peer for the mounted-filesystem tests: another "host" that maps
the region, as every host does, and writes whatever it likes into it.

    Peer(region)         maps the region (a file, or a file at an offset)
      .join()/.leave()   claim a host slot like a daemon (token CAS,
                         identity, heartbeat thread) and give it back
      .locked()          hold the metadata lock (ctl_lock CAS) for a block
      .publish(...)      append a record at the log tail with a valid
                         checksum, under the lock, exactly as a daemon
                         publishes (payload, header, then lr_seq CAS)
      .put(...)          the same with any header the test wants
      .scribble(...)     random bytes anywhere in the region

Shared words (lr_seq, ctl_lock, hs_token, hs_heartbeat) are read and
changed with the atomics of libatomic through ctypes, which on x86-64 and
arm64 are the same lock-free instructions the daemons use.  Checksums and
payload layouts come from the on-media module tests/media.py
(XXH3 from the system libxxhash), imported here under another name.

Also here, for every test that damages a mounted region: a watchdog for
operations that must return (`within`), a workload that keeps every mount
busy (`Workload`), and the failure report for a hang, with the daemons'
and the stuck threads' stacks.
"""
import collections
import ctypes
import ctypes.util
import errno
import hashlib
import mmap
import os
import random
import stat
import struct
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import backtrace, read_bytes, write_bytes

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

# The on-media format: constants, xxh3(), stride(), p_create() and friends.
import media as ed  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
CTL_OFF = ed.CTL_OFF
LOCK_OFF = CTL_OFF + 64
LOCK_SHIFT = ed.LOCK_SHIFT
LOCK_GEN_MASK = (1 << LOCK_SHIFT) - 1
HOSTS_OFF = ed.HOSTS_OFF
HOST_SLOT = ed.HOST_SLOT
LR_HDR = ed.LR_HDR
LR_SEAL = ed.LR_SEAL
SEAL_SKIP = ed.SEAL_SKIP
PAYLOAD_MAX = 65536 + 4096
SEQ_MAX = (1 << 62) - 1
LR_RELEASE = ed.LR_RELEASE
F_KEEP = ed.F_KEEP
EXT_F_SIZE, EXT_F_AHEAD = 1, 2
S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR = 0o100000, 0o040000, 0o120000, 0o020000
HOST_FMT = ed.HOST_FMT

# Generous: the machine is small and shared, and sanitizer builds are slow.
HANG = 60.0

# ---- atomics ------------------------------------------------------------------

_SEQ_CST = 5


def _load_atomics():
    name = ctypes.util.find_library("atomic") or "libatomic.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    load = getattr(lib, "__atomic_load_8")
    load.argtypes, load.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_uint64
    cas = getattr(lib, "__atomic_compare_exchange_8")
    cas.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64), ctypes.c_uint64,
                    ctypes.c_int, ctypes.c_int]
    cas.restype = ctypes.c_bool
    add = getattr(lib, "__atomic_fetch_add_8")
    add.argtypes, add.restype = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int], ctypes.c_uint64
    store = getattr(lib, "__atomic_store_8")
    store.argtypes, store.restype = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int], None
    return load, cas, add, store


_ATOMICS = _load_atomics()


def sha(data):
    return hashlib.sha256(data).hexdigest()


# ---- the peer -----------------------------------------------------------------

class Peer:
    """Another host on the region.  `region` is a conftest Region (its path
    may carry ,offset=,length=) or a path."""

    def __init__(self, region):
        if _ATOMICS is None:
            pytest.skip("libatomic is not loadable: cannot share atomic words with the daemons")
        self._load, self._cas, self._add, self._store = _ATOMICS
        spec = str(getattr(region, "path", region))
        path, offset, length = spec, 0, None
        if ",offset=" in spec or ",length=" in spec:
            path, *opts = spec.split(",")
            for o in opts:
                k, v = o.split("=")
                if k == "offset":
                    offset = int(v)
                elif k == "length":
                    length = int(v)
        self.fd = os.open(path, os.O_RDWR)
        if length is None:
            length = os.fstat(self.fd).st_size - offset
        self.size = length
        self.mm = mmap.mmap(self.fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                            offset=offset)
        self._pin = ctypes.c_char.from_buffer(self.mm)
        self.base = ctypes.addressof(self._pin)
        raw = self.read(0, ed.SB_SIZE)
        self.sb = {k: struct.unpack_from("<" + t, raw, o)[0] for k, (o, t) in ed.SB_FIELDS.items()}
        self.log_off, self.log_size = self.sb["log_off"], self.sb["log_size"]
        self.slot = None
        self.token = 0
        self.lock_word = None
        self._beat_stop = threading.Event()
        self._beater = None

    def close(self):
        if self.slot is not None:
            self.leave()
        del self._pin
        self.mm.close()
        os.close(self.fd)

    # raw access
    def read(self, off, n):
        assert 0 <= off and off + n <= self.size
        return bytes(self.mm[off:off + n])

    def write(self, off, data):
        data = bytes(data)
        assert 0 <= off and off + len(data) <= self.size, "the peer writes inside the region"
        self.mm[off:off + len(data)] = data

    def load(self, off):
        return self._load(self.base + off, _SEQ_CST)

    def cas(self, off, old, new):
        exp = ctypes.c_uint64(old)
        return self._cas(self.base + off, ctypes.byref(exp), new, _SEQ_CST, _SEQ_CST)

    def store(self, off, v):
        self._store(self.base + off, v, _SEQ_CST)

    def scribble(self, off, n, rng):
        """n random bytes at off; returns them."""
        junk = rng.randbytes(n)
        self.write(off, junk)
        return junk

    # host slot
    def slot_off(self, i):
        return HOSTS_OFF + i * HOST_SLOT

    def join(self, name=b"peer"):
        for i in range(self.sb["max_hosts"]):
            off = self.slot_off(i)
            token = random.getrandbits(64) | 1
            if self.load(off) == 0 and self.cas(off, 0, token):
                break
        else:
            raise AssertionError("no free host slot for the peer")
        now = time.time_ns()
        slot = bytearray(struct.pack(HOST_FMT, token, 0, now, 0, 0, ed.HOST_JOINING, 0, now,
                                     os.getpid(), 0, name, b"peer-node", b"\x02" * 16,
                                     0, 0, 0, 0, 0, 0))
        struct.pack_into("<Q", slot, 240, ed.host_ident_csum(slot))
        self.write(off + 16, slot[16:])
        self._add(self.base + off + 8, 1, _SEQ_CST)
        self.write(off + 40, struct.pack("<I", ed.HOST_ACTIVE))
        self.slot, self.token = i, token
        self._beat_stop.clear()
        self._beater = threading.Thread(target=self._beat, daemon=True)
        self._beater.start()
        return i

    def _beat(self):
        off = self.slot_off(self.slot)
        while not self._beat_stop.wait(0.05):
            self._add(self.base + off + 8, 1, _SEQ_CST)

    def leave(self):
        self._beat_stop.set()
        self._beater.join()
        off = self.slot_off(self.slot)
        self.write(off + 40, struct.pack("<I", ed.HOST_FREE))
        self.cas(off, self.token, 0)
        self.slot = None

    # the metadata lock
    def lock(self, timeout=HANG):
        assert self.slot is not None, "join first: the lock word names a host slot"
        t0 = time.monotonic()
        while True:
            v = self.load(LOCK_OFF)
            if v >> LOCK_SHIFT == 0:
                mine = (self.slot + 1) << LOCK_SHIFT | ((v & LOCK_GEN_MASK) + 1) & LOCK_GEN_MASK
                if self.cas(LOCK_OFF, v, mine):
                    self.lock_word = mine
                    return
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"the peer could not take the metadata lock ({v:#x})")
            time.sleep(0.0002)

    def unlock(self):
        assert self.cas(LOCK_OFF, self.lock_word, self.lock_word & LOCK_GEN_MASK), \
            "somebody broke the peer's lock"
        self.lock_word = None

    @contextmanager
    def locked(self):
        self.lock()
        try:
            yield
        finally:
            self.unlock()

    # the log
    def records(self):
        """[(pos, seq, type, lr_len)] of the published chain, following seals."""
        out, pos = [], 0
        while pos + LR_HDR <= self.log_size:
            word = self.load(self.log_off + pos)
            if word == 0:
                break
            if word & LR_SEAL:
                pos = min(pos + SEAL_SKIP, self.log_size)
                continue
            rtype, _, plen = struct.unpack("<HHI", self.read(self.log_off + pos + 8, 8))
            assert plen <= PAYLOAD_MAX, f"the log is damaged at {pos}"
            out.append((pos, word, rtype, plen))
            pos += ed.stride(plen)
        return out

    def log_end(self):
        """(pos, next seq) after the last published record."""
        pos, seq = 0, 1
        while pos + LR_HDR <= self.log_size:
            word = self.load(self.log_off + pos)
            if word == 0:
                break
            if word & LR_SEAL:
                seq = word & ~LR_SEAL
                pos = min(pos + SEAL_SKIP, self.log_size)
                continue
            plen, = struct.unpack("<I", self.read(self.log_off + pos + 12, 4))
            assert plen <= PAYLOAD_MAX, f"the log is damaged at {pos}"
            pos += ed.stride(plen)
            seq = word + 1
        return pos, seq

    def put(self, pos, word, rtype, payload, flags=0, lr_len=None, host=None, pad0=0,
            time_ns=None, csum=None, csum_seq=None):
        """Write a record at log position pos and publish it by CAS of its
        lr_seq word from 0 to `word`.  The checksum is valid (computed for
        sequence csum_seq, default word) unless csum is given."""
        lr_len = len(payload) if lr_len is None else lr_len
        host = self.slot if host is None else host
        gen = (self.lock_word or 0) & 0xFFFFFFFF
        t = time.time_ns() if time_ns is None else time_ns
        hdr = struct.pack("<QHHIHHIQ", word if csum_seq is None else csum_seq, rtype, flags,
                          lr_len, host, pad0, gen, t)
        if csum is None:
            csum = ed.xxh3(hdr, ed.xxh3(payload, self.sb["log_seed"]))
        at = self.log_off + pos
        room = self.log_size - pos - LR_HDR
        self.write(at + LR_HDR, payload[:room])
        self.write(at + 8, hdr[8:] + struct.pack("<Q", csum))
        assert self.cas(at, 0, word), f"log position {pos} was not free"
        return pos

    def seal(self):
        """Seal the slot at the tail, as a lock breaker does (holding the
        lock): the next record goes SEAL_SKIP bytes further on."""
        with self.locked():
            pos, seq = self.log_end()
            assert self.cas(self.log_off + pos, 0, LR_SEAL | seq)
        return pos

    def publish(self, rtype, payload, **kw):
        """Append one record after the last, holding the lock: (pos, seq)."""
        return self.publish_all([(rtype, payload, kw)])[0]

    def publish_all(self, recs):
        """Append records [(rtype, payload, kw)] in one hold of the lock, so
        that no other host's record comes in between: [(pos, seq)]."""
        out = []
        with self.locked():
            for rtype, payload, kw in recs:
                pos, seq = self.log_end()
                self.put(pos, seq, rtype, payload, **kw)
                self.store(self.slot_off(self.slot) + 24, seq)  # hs_applied_seq
                out.append((pos, seq))
        return out


class Canary:
    """A directory on the host, outside any region: nothing may change it."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="shmfs-canary-", dir="/tmp"))
        self.path.chmod(0o755)
        write_bytes(self.path / "data", os.urandom(65536))
        write_bytes(self.path / "empty", b"")
        (self.path / "secret").write_bytes(b"canary secret\n")
        (self.path / "secret").chmod(0o600)
        (self.path / "sub").mkdir()
        write_bytes(self.path / "sub" / "inner", b"inner")
        os.symlink("data", self.path / "link")
        self.before = self.snapshot()

    def snapshot(self):
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            for name in [".", *dirnames, *filenames]:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                data = read_bytes(p) if stat.S_ISREG(st.st_mode) else None
                out[os.path.relpath(p, self.path)] = (
                    st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                    st.st_ctime_ns, sha(data) if data is not None else None,
                    os.readlink(p) if stat.S_ISLNK(st.st_mode) else None,
                    tuple(sorted(os.listxattr(p, follow_symlinks=False))))
        return out

    def check(self):
        now = self.snapshot()
        assert now == self.before, "the canary directory changed"


# ---- watchdogs ------------------------------------------------------------------

def kernel_stack(tid):
    try:
        return Path(f"/proc/self/task/{tid}/stack").read_text()
    except OSError as e:
        return f"({e})"


def hang(what, mounts, thread=None):
    """Fail the test: something did not return; show where everyone is."""
    out = [f"{what}: no answer within {HANG:.0f} s"]
    if thread is not None and thread.native_id:
        frame = sys._current_frames().get(thread.ident)
        out.append("stuck thread (Python):\n" + "".join(traceback.format_stack(frame)))
        out.append("stuck thread (kernel):\n" + kernel_stack(thread.native_id))
    for m in mounts:
        if m.proc.poll() is None:
            out.append(f"daemon {m.host} (pid {m.proc.pid}) threads:\n" + backtrace(m.proc.pid))
        else:
            out.append(f"daemon {m.host} exited with {m.proc.returncode}")
        out.append(f"daemon {m.host} log:\n" + m.logtext()[-3000:])
    pytest.fail("\n".join(out), pytrace=False)


def within(what, mounts, fn, *args, timeout=HANG):
    """fn(*args) in a helper thread: its result or its exception; a call
    that does not return within timeout fails the test with stacks."""
    box = {}

    def run_():
        try:
            box["ok"] = fn(*args)
        except BaseException as e:  # handed to the caller
            box["err"] = e

    t = threading.Thread(target=run_, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        hang(what, mounts, t)
    if "err" in box:
        raise box["err"]
    return box.get("ok")


def attempt(fn, *args):
    """fn(*args): "ok", or the errno name it failed with."""
    try:
        fn(*args)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


class Workload:
    """One thread per mount that keeps creating, writing, reading, renaming
    and removing files in a directory of its own.  Once the region is
    damaged, failures (EIO, ESTALE, ENOENT, ...) are expected and counted;
    an operation that does not return is a hang."""

    def __init__(self, mounts, seed=0):
        self.mounts = list(mounts)
        self.seed = seed
        self.stop_ev = threading.Event()
        self.threads = {}
        self.last = {}
        self.ok = collections.Counter()
        self.errors = {m.host: collections.Counter() for m in self.mounts}

    def start(self):
        for i, m in enumerate(self.mounts):
            self.last[m.host] = time.monotonic()
            t = threading.Thread(target=self._run, args=(m, random.Random(self.seed * 100 + i)),
                                 daemon=True, name=f"work-{m.host}")
            self.threads[m.host] = t
            t.start()
        return self

    def _run(self, m, rng):
        d = m.path / f"work-{m.host}"
        n = 0
        while not self.stop_ev.is_set():
            n += 1
            a, b = rng.randrange(16), rng.randrange(16)
            op = rng.randrange(9)
            try:
                if op == 0 or n == 1:
                    os.makedirs(d, exist_ok=True)
                elif op <= 2:
                    with open(d / f"f{a}", "wb") as f:
                        f.write(rng.randbytes(rng.choice([0, 100, 5000, 70000])))
                elif op == 3:
                    with open(d / f"f{a}", "rb") as f:
                        f.read()
                elif op == 4:
                    os.rename(d / f"f{a}", d / f"f{b}")
                elif op == 5:
                    os.unlink(d / f"f{a}")
                elif op == 6:
                    os.listdir(m.path)
                    os.stat(m.path / "keep")
                elif op == 7:
                    os.mkdir(d / f"s{a}")
                else:
                    os.rmdir(d / f"s{a}")
                self.ok[m.host] += 1
            except OSError as e:
                self.errors[m.host][errno.errorcode.get(e.errno, str(e.errno))] += 1
            self.last[m.host] = time.monotonic()
            time.sleep(0.002)

    def check(self):
        """Every thread finished an operation within HANG."""
        now = time.monotonic()
        for host, t in self.threads.items():
            if t.is_alive() and now - self.last[host] > HANG:
                hang(f"workload on {host}", self.mounts, t)

    def progress(self, host):
        """How many operations the thread on host has finished so far."""
        return self.ok[host] + sum(self.errors[host].values())

    def wait_ok(self, host, more=20):
        """Wait for `more` further successful operations on host."""
        want = self.ok[host] + more
        t0 = time.monotonic()
        while self.ok[host] < want:
            self.check()
            if time.monotonic() - t0 > HANG:
                raise AssertionError(f"{host} made no progress: {self.ok[host]} ok, "
                                     f"errors {dict(self.errors[host])}")
            time.sleep(0.05)

    def stop(self):
        self.stop_ev.set()
        for host, t in self.threads.items():
            t.join(HANG)
            if t.is_alive():
                hang(f"workload on {host} (stopping)", self.mounts, t)
        return {h: (self.ok[h], dict(self.errors[h])) for h in self.errors}
