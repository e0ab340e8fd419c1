# SPDX-License-Identifier: MIT
"""Hostile peers: while two daemons are mounted and busy, another host
writes random bytes into the log (over records not written yet, and over
records already applied), into the host table (the daemons' own slots
too), into the control page (the lock word) and into the superblocks, or
publishes well-formed records -- valid checksums -- that describe
impossible things.

Every test checks that
  - no daemon dies (signal, sanitizer report) or stops answering: every
    operation runs under a watchdog, and one that does not return fails
    the test with the daemons' stacks;
  - files that existed before, and that the damage did not touch, still
    read back with the right checksum;
  - the daemons report the damage on stderr;
  - nothing outside the region changed: the region sits at an offset inside
    a larger file whose guard bytes are compared, and a canary directory
    on the host is compared;
  - after unmounting, fsck.shmfs -y repairs the region, fsck.shmfs -n is
    then clean, and the region mounts and works again.

These tests do their own repair, so they skip the teardown fsck
(no_fsck).  ctest runs them as `hostile` (labels fuzz and mount).
"""
import os
import random
import shutil
import stat
import struct
import time
from pathlib import Path

import pytest

from conftest import (BIN, MiB, Region, check_log, exists, read_bytes, run, wait_until,
                      write_bytes)
from peer import (CTL_OFF, HOST_SLOT, HOSTS_OFF, LOCK_OFF, LOCK_SHIFT, LR_HDR, LR_SEAL,
                  PAYLOAD_MAX, SEAL_SKIP, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, SEQ_MAX, Canary,
                  Peer, Workload, attempt, ed, sha, within)

pytestmark = [pytest.mark.expect_errors, pytest.mark.no_fsck]

GUARD = 2 * MiB
STUCK = "log replay stopped"


# ---- fixtures -----------------------------------------------------------------------

class GuardedRegion(Region):
    """A region at an offset inside a larger file: bytes on either side of
    it are random and must never change."""

    def __init__(self, file, length):
        super().__init__(f"{file},offset={GUARD},length={length}")
        self.file = Path(file)
        self.length = length
        self.fsize = os.path.getsize(file)
        self.head, self.tail = self._guards()

    def _guards(self):
        with open(self.file, "rb") as f:
            head = sha(f.read(GUARD))
            f.seek(GUARD + self.length)
            tail = sha(f.read())
        return head, tail

    def check_guards(self):
        assert os.path.getsize(self.file) == self.fsize, "the region file changed size"
        assert self._guards() == (self.head, self.tail), "bytes outside the region changed"


@pytest.fixture
def guarded(shm_dir):
    def make(length=256 * MiB, *mkfs_args):
        path = shm_dir / f"guarded-{random.getrandbits(32):08x}.img"
        with open(path, "wb") as f:
            f.write(os.urandom(GUARD))
            f.truncate(GUARD + length + GUARD)
            f.seek(GUARD + length)
            f.write(os.urandom(GUARD))
        spec = f"{path},offset={GUARD},length={length}"
        run([BIN / "mkfs.shmfs", "-q", "-f", *mkfs_args, spec])
        return GuardedRegion(path, length)
    return make


@pytest.fixture
def canary():
    c = Canary()
    yield c
    try:
        c.check()
    finally:
        shutil.rmtree(c.path, ignore_errors=True)


# ---- helpers ---------------------------------------------------------------------------

def populate(m, rng, n=12):
    """keep/f00.. with contents of several sizes, and a symlink; returns
    {relative path: sha256}.  Each file is closed before the next is
    created, so its records all come before the next file's."""
    files = {}
    os.mkdir(m / "keep")
    for i in range(n):
        data = rng.randbytes(rng.choice([0, 1, 4096, 10_000, 200_000]))
        write_bytes(m / "keep" / f"f{i:02d}", data)
        files[f"keep/f{i:02d}"] = sha(data)
    os.symlink("f00", m / "keep" / "link")
    return files


def check_files(m, files):
    for rel, h in files.items():
        got = sha(read_bytes(m / rel))
        assert got == h, f"{m.host}: {rel} changed"


def check_intact(mounts, files):
    for m in mounts:
        within(f"reading the intact files through {m.host}", mounts, check_files, m, files)


def start_pair(mounts, reg, seed):
    a, b = mounts(2, reg=reg)
    rng = random.Random(seed)
    files = within("populate", [a, b], populate, a, rng)
    wait_until(lambda: exists(b / "keep" / "link"), 5)
    check_intact([a, b], files)
    return a, b, files


def alive(mounts):
    for m in mounts:
        assert m.proc.poll() is None, \
            f"daemon {m.host} exited ({m.proc.returncode}):\n" + m.logtext()
        bad = check_log(m.logtext(), expect_errors=True)
        assert not bad, f"daemon {m.host}: " + "\n".join(bad)


def reported(m, text, timeout=30):
    wait_until(lambda: text in m.logtext(), timeout, interval=0.05)


def try_create(mounts, m, name):
    return within(f"create through {m.host}", mounts, attempt, write_bytes, m / name, b"new")


def fsck(reg, *args):
    p = run([BIN / "fsck.shmfs", *args, reg.path], check=False, timeout=300)
    for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert marker not in p.stderr, p.stderr
    assert p.returncode >= 0, f"fsck.shmfs died of signal {-p.returncode}"
    return p


def unmount_all(mounts):
    for m in mounts:
        assert m.unmount(), f"daemon {m.host} did not exit after its unmount"
        assert m.proc.returncode >= 0, f"daemon {m.host} died of signal {-m.proc.returncode}"


def repair(reg, damaged=True):
    """fsck -y repairs; fsck -n is then clean."""
    p = fsck(reg, "-y")
    assert p.returncode in ((1,) if damaged else (0, 1)), \
        f"fsck.shmfs -y exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    p = fsck(reg, "-n")
    assert p.returncode == 0, \
        f"fsck.shmfs -n after repair exited {p.returncode}:\n{p.stdout}\n{p.stderr}"


def remount_and_check(mounts, reg, files, gone=(), full=False):
    """The repaired region mounts cleanly, serves the intact files, takes
    new ones (unless its log is full), and is still clean after
    unmounting."""
    m = mounts(1, reg=reg, one=True)
    within("reading after repair", [m], check_files, m, files)
    for rel in gone:
        assert not exists(m / rel), rel
    if full:
        assert try_create([m], m, "after-repair") == "ENOSPC"
    else:
        within("writing after repair", [m], write_bytes, m / "after-repair", b"works")
        assert within("reading after repair", [m], read_bytes, m / "after-repair") == b"works"
    assert not check_log(m.logtext()), m.logtext()
    unmount_all([m])
    p = fsck(reg, "-n")
    assert p.returncode == 0, p.stdout + p.stderr


def finish(mounts, reg, canary, work, daemons, files, gone=(), damaged=True, full=False):
    """The common end of every test: stop the workload (no hang), daemons
    alive, intact files intact, nothing outside the region changed;
    unmount, repair, remount."""
    if work:
        print("workload (ok, errors) per host:", work.stop())
    for m in daemons:
        print(f"--- {m.host} stderr:\n" + m.logtext()[:2000])
    alive(daemons)
    check_intact(daemons, files)
    canary.check()
    reg.check_guards()
    unmount_all(daemons)
    reg.check_guards()
    repair(reg, damaged)
    reg.check_guards()
    remount_and_check(mounts, reg, files, gone, full)
    reg.check_guards()


def host_slot(reg, m):
    for slot, _, name, _ in reg.hosts():
        if name == m.host:
            return slot
    raise AssertionError(f"{m.host} has no host slot")


# ---- random bytes in the log ---------------------------------------------------------------

@pytest.mark.parametrize("where", ["at-tail", "ahead-of-tail"])
def test_random_bytes_over_log_tail(guarded, mounts, canary, where):
    """Garbage where the next records go: at the tail itself (replay meets
    it at once), or just after the tail's first word (the next writer
    writes over part of it, and the record after lands in it)."""
    reg = guarded()
    a, b, files = start_pair(mounts, reg, f"tail-{where}")
    work = Workload([a, b], seed=1).start()
    work.wait_ok(a.host), work.wait_ok(b.host)
    peer = Peer(reg)
    peer.join()
    rng = random.Random(where)
    with peer.locked():
        pos, seq = peer.log_end()
        junk = bytearray(rng.randbytes(64 * 1024))
        if where == "at-tail":
            struct.pack_into("<Q", junk, 0, rng.getrandbits(64) | (1 << 62))  # not 0, not seq
            peer.write(peer.log_off + pos, junk)
        else:
            peer.write(peer.log_off + pos + 8, junk)
    peer.close()
    for m in (a, b):
        reported(m, STUCK)
    work.check()
    # metadata changes fail from now on; reads do not
    for m in (a, b):
        assert try_create([a, b], m, f"late-{m.host}") in ("EIO", "ESTALE")
    check_intact([a, b], files)
    finish(mounts, reg, canary, work, [a, b], files)


@pytest.mark.parametrize("victim", ["f06", "root"])
def test_random_bytes_over_applied_records(guarded, mounts, canary, victim):
    """Garbage over a record every mounted daemon has applied (a file's
    create, or record 1, the root directory's): they never read it again
    and go on; a daemon that mounts afterwards stops in front of it and
    serves what came before; fsck bridges it (rebuilding the root) and
    keeps what came after."""
    reg = guarded()
    a, b, files = start_pair(mounts, reg, f"applied-{victim}")
    work = Workload([a, b], seed=2).start()
    work.wait_ok(a.host), work.wait_ok(b.host)
    recs = reg.dump()["records"]
    if victim == "root":
        rec = recs[0]
        assert rec["seq"] == 1 and rec["payload"]["ino"] == 1
    else:
        rec = next(r for r in recs
                   if r["type"] == "create" and r["payload"].get("name") == victim)
    peer = Peer(reg)
    peer.scribble(peer.log_off + rec["pos"], ed.stride(rec["len"]), random.Random(6))
    peer.close()
    # the mounted daemons go on, writes included
    work.wait_ok(a.host), work.wait_ok(b.host)
    assert try_create([a, b], a, "still-writable") == "ok"
    # a new daemon replays from the start: it stops at the damage, says so,
    # and serves what was written before it (nothing, without a root)
    c = mounts(1, reg=reg, one=True, wait=victim != "root")
    reported(c, STUCK)
    if victim == "root":
        wait_until(c.mounted, 10)
        assert within("stat of a root that does not exist", [a, b, c], attempt,
                      os.stat, c.path) != "ok"
        survivors, gone = files, []
    else:
        check_intact([c], {k: v for k, v in files.items() if k < "keep/f06"})
        assert not exists(c / "keep" / "f07")
        assert try_create([a, b, c], c, "from-c") == "EIO"
        survivors, gone = {k: v for k, v in files.items() if k != "keep/f06"}, ["keep/f06"]
    work.wait_ok(a.host), work.wait_ok(b.host)
    work.stop()
    alive([a, b, c])
    check_intact([a, b], files)
    unmount_all([c])
    finish(mounts, reg, canary, None, [a, b], survivors, gone=gone)


@pytest.mark.parametrize("kind", ["seq-gap", "seq-max", "len-too-big", "bad-seal", "bad-checksum",
                                  "seal-of-the-past"])
def test_damaged_record_headers(guarded, mounts, canary, kind):
    """Records whose checksum is valid (or not) but whose header cannot be
    right: replay stops in front of them on every host and says why."""
    reg = guarded()
    a, b, files = start_pair(mounts, reg, f"hdr-{kind}")
    work = Workload([a, b], seed=3).start()
    work.wait_ok(a.host), work.wait_ok(b.host)
    peer = Peer(reg)
    peer.join()
    payload = ed.p_create(10_000_000, 1, S_IFREG | 0o644, b"hostile")
    with peer.locked():
        pos, seq = peer.log_end()
        if kind == "seq-gap":
            peer.put(pos, seq + 5, ed.LR_CREATE, payload)
        elif kind == "seq-max":
            peer.put(pos, SEQ_MAX + 1, ed.LR_CREATE, payload)
        elif kind == "len-too-big":
            peer.put(pos, seq, ed.LR_NOOP, bytes(PAYLOAD_MAX + 8))
        elif kind == "bad-seal":
            peer.put(pos, LR_SEAL | (seq + 3), ed.LR_NOOP, b"")
        elif kind == "seal-of-the-past":
            peer.put(pos, LR_SEAL | (seq - 1), ed.LR_NOOP, b"")
        else:
            peer.put(pos, seq, ed.LR_CREATE, payload, csum=0x0123456789ABCDEF)
    peer.close()
    for m in (a, b):
        reported(m, STUCK)
        assert try_create([a, b], m, f"late-{m.host}") in ("EIO", "ESTALE")
    assert not exists(a / "hostile") and not exists(b / "hostile")
    finish(mounts, reg, canary, work, [a, b], files)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scattered_random_bytes(guarded, mounts, canary, seed):
    """Many small bursts of random bytes at random places -- applied
    records, the log tail, host slots, the lock word -- while both daemons
    work.  Which files survive the repair depends on where the bytes fell;
    the daemons must live through all of it, and fsck must leave a region
    that checks clean and mounts."""
    reg = guarded()
    a, b, files = start_pair(mounts, reg, f"scatter-{seed}")
    work = Workload([a, b], seed=10 + seed).start()
    work.wait_ok(a.host), work.wait_ok(b.host)
    peer = Peer(reg)
    rng = random.Random(seed)
    tail = peer.log_end()[0]
    hosts_end = HOSTS_OFF + peer.sb["max_hosts"] * HOST_SLOT
    for _ in range(40):
        where = rng.choice(["applied", "tail", "hosts", "lock"])
        if where == "applied":
            off = peer.log_off + rng.randrange(tail)
        elif where == "tail":
            off = peer.log_off + tail + rng.randrange(256 * 1024)
        elif where == "hosts":
            off = rng.randrange(HOSTS_OFF, hosts_end)
        else:
            off = LOCK_OFF
        n = 8 if where == "lock" else rng.randrange(1, 64)
        peer.scribble(off, n, rng)
        work.check()
        time.sleep(0.05)
    peer.close()
    time.sleep(3)  # a lease: broken locks, lost slots
    work.check()
    print("workload (ok, errors) per host:", work.stop())
    for m in (a, b):
        print(f"--- {m.host} stderr:\n" + m.logtext()[:3000])
    alive([a, b])
    check_intact([a, b], files)  # from memory: nothing re-reads applied records
    canary.check()
    reg.check_guards()
    unmount_all([a, b])
    repair(reg)
    reg.check_guards()
    remount_and_check(mounts, reg, {})
    reg.check_guards()


@pytest.mark.parametrize("how", ["filled-by-seals", "record-past-the-end"])
def test_log_end(guarded, mounts, canary, how):
    """A peer seals slot after slot (valid: each skips 128 KiB) until the
    log is full -- metadata changes fail with ENOSPC, nothing is damaged --
    or, near the end, publishes a record too long for what is left of the
    log: replay stops in front of it."""
    reg = guarded(256 * MiB, "--log-size", "1M")
    a, b, files = start_pair(mounts, reg, f"end-{how}")
    work = Workload([a, b], seed=11).start()
    work.wait_ok(a.host), work.wait_ok(b.host)
    peer = Peer(reg)
    peer.join()
    big = ed.stride(PAYLOAD_MAX)
    while True:
        with peer.locked():
            pos, seq = peer.log_end()
            left = peer.log_size - pos
            if how == "filled-by-seals" and left < LR_HDR:
                break
            if how == "filled-by-seals" or left >= SEAL_SKIP + 2 * big:
                assert peer.cas(peer.log_off + pos, 0, LR_SEAL | seq)
            elif left >= 2 * big:
                peer.put(pos, seq, ed.LR_NOOP, bytes(PAYLOAD_MAX))
            elif left >= big:  # leave less than a largest record
                peer.put(pos, seq, ed.LR_NOOP, bytes(left - big + 8 - LR_HDR))
            else:
                peer.put(pos, seq, ed.LR_NOOP, bytes(left - LR_HDR), lr_len=PAYLOAD_MAX)
                break
    peer.close()
    if how == "filled-by-seals":
        for m in (a, b):
            wait_until(lambda: try_create([a, b], m, f"late-{m.host}") == "ENOSPC", 30)
            assert STUCK not in m.logtext()
    else:
        for m in (a, b):
            reported(m, STUCK)
            assert try_create([a, b], m, f"late-{m.host}") in ("EIO", "ESTALE")
    finish(mounts, reg, canary, work, [a, b], files, damaged=how != "filled-by-seals",
           full=how == "filled-by-seals")


# ---- random bytes in the host table, the control page, the superblocks -------------------

@pytest.mark.parametrize("what", ["own-slot", "other-slots", "whole-table"])
def test_random_bytes_over_host_table(guarded, mounts, canary, what):
    """A daemon whose slot is overwritten has lost its lease as far as the
    others can tell (they may take the slot, release its orphans, reuse
    space it pins): it must say so and stop changing metadata, while it
    goes on serving reads.  The others carry on."""
    reg = guarded()
    a, b, files = start_pair(mounts, reg, f"hosts-{what}")
    work = Workload([a, b], seed=4).start()
    work.wait_ok(a.host), work.wait_ok(b.host)
    sa, sb_ = host_slot(reg, a), host_slot(reg, b)
    peer = Peer(reg)
    rng = random.Random(what)
    nslots = peer.sb["max_hosts"]
    if what == "own-slot":
        peer.scribble(HOSTS_OFF + sa * HOST_SLOT, HOST_SLOT, rng)
    elif what == "other-slots":
        for i in range(nslots):
            if i not in (sa, sb_):
                peer.scribble(HOSTS_OFF + i * HOST_SLOT, HOST_SLOT, rng)
    else:
        peer.scribble(HOSTS_OFF, nslots * HOST_SLOT, rng)
    peer.close()
    lost = {"own-slot": [a], "other-slots": [], "whole-table": [a, b]}[what]
    for m in lost:
        reported(m, "host slot")
    work.check()
    time.sleep(3)  # more than a lease: the others now count the lost hosts as dead
    for m in (a, b):
        if m in lost:
            assert try_create([a, b], m, f"late-{m.host}") in ("EIO", "ESTALE", "EROFS")
        else:
            work.wait_ok(m.host)
            assert try_create([a, b], m, f"late-{m.host}") == "ok"
    check_intact([a, b], files)
    if what == "whole-table":
        # a new host finds no free slot, takes a silent one, and works
        c = mounts(1, reg=reg, one=True, timeout=30)
        check_intact([c], files)
        assert try_create([a, b, c], c, "from-c") == "ok"
        wait_until(lambda: exists(a / "from-c"), 5)
        alive([c])
        unmount_all([c])
    finish(mounts, reg, canary, work, [a, b], files)


@pytest.mark.parametrize("owner", ["idle-host", "writer-itself", "no-such-host", "free-slot"])
def test_garbage_lock_word(guarded, mounts, canary, owner):
    """ctl_lock overwritten with a word that names a lock holder which is
    not holding it.  A writer must get the lock within a lease or so --
    in particular when the word names a live host that is idle, whose
    heartbeat keeps moving (it would be waited for forever)."""
    reg = guarded()
    a, b, files = start_pair(mounts, reg, f"lock-{owner}")
    sa, sb_ = host_slot(reg, a), host_slot(reg, b)
    peer = Peer(reg)
    nslots = peer.sb["max_hosts"]
    who = {"idle-host": sa + 1, "writer-itself": sb_ + 1, "no-such-host": 0xFFFF,
           "free-slot": nslots}[owner]
    gen = random.Random(owner).getrandbits(LOCK_SHIFT)
    peer.store(LOCK_OFF, who << LOCK_SHIFT | gen)
    peer.close()
    # only B writes; A only reads, so it never takes the lock on its own
    work = Workload([b], seed=5).start()
    work.wait_ok(b.host, 50)
    for i in range(20):
        within("create after the lock word was overwritten", [a, b],
               write_bytes, b / f"after-{i}", b"x")
    work.stop()
    wait_until(lambda: exists(a / "after-19"), 5)
    finish(mounts, reg, canary, None, [a, b], files, damaged=False)


def test_random_bytes_over_control_page(guarded, mounts, canary):
    reg = guarded()
    a, b, files = start_pair(mounts, reg, "ctl")
    work = Workload([a, b], seed=6).start()
    work.wait_ok(a.host), work.wait_ok(b.host)
    peer = Peer(reg)
    junk = bytearray(random.Random("ctl").randbytes(4096))
    struct.pack_into("<Q", junk, 64, 0xFFFF << LOCK_SHIFT | 12345)  # held by nobody alive
    peer.write(CTL_OFF, junk)
    peer.close()
    # the mounted daemons go on (after a lease, the lock is broken)
    work.wait_ok(a.host), work.wait_ok(b.host)
    for m in (a, b):
        assert try_create([a, b], m, f"late-{m.host}") == "ok"
    # a new read-write mount refuses the damaged control page, and says why
    c = mounts(1, reg=reg, one=True, wait=False)
    assert within("refused mount", [a, b], c.proc.wait, 60) != 0
    assert "control page" in c.logtext(), c.logtext()
    assert not c.mounted()
    finish(mounts, reg, canary, work, [a, b], files)


def test_random_bytes_over_superblocks(guarded, mounts, canary):
    """Mounted daemons work from their validated private copy.  A new
    mount uses the backup when the primary is damaged (with a warning),
    and refuses the region when both are."""
    reg = guarded()
    a, b, files = start_pair(mounts, reg, "super")
    work = Workload([a, b], seed=7).start()
    work.wait_ok(a.host), work.wait_ok(b.host)
    peer = Peer(reg)
    rng = random.Random("super")
    backup = peer.read(8192, 512)
    peer.scribble(0, 4096, rng)
    work.wait_ok(a.host), work.wait_ok(b.host)
    c = mounts(1, reg=reg, one=True)
    assert "fsck" in c.logtext(), c.logtext()
    check_intact([c], files)
    alive([c])
    unmount_all([c])
    peer.scribble(8192, 512, rng)
    d = mounts(1, reg=reg, one=True, wait=False)
    assert within("refused mount", [a, b], d.proc.wait, 60) != 0
    assert d.logtext().startswith("shmfs:"), d.logtext()
    assert not d.mounted()
    work.wait_ok(a.host), work.wait_ok(b.host)
    peer.write(8192, backup)  # fsck never guesses a geometry: give it one copy back
    peer.close()
    finish(mounts, reg, canary, work, [a, b], files)


# ---- well-formed hostile records ---------------------------------------------------------------

def extents_of(reg, name):
    """(ino, [(foff, doff, len)]) of the file created with this name."""
    recs = reg.dump()["records"]
    ino = next(r["payload"]["ino"] for r in recs
               if r["type"] == "create" and r["payload"].get("name") == name)
    return ino, [(r["payload"]["foff"], r["payload"]["doff"], r["payload"]["len"])
                 for r in recs if r["type"] == "extent-map" and r["payload"]["ino"] == ino]


def ino_of(m, rel):
    return os.lstat(m / rel).st_ino


def test_wellformed_hostile_records_are_rejected(guarded, mounts, canary):
    """Records with valid checksums that no correct writer produces:
    impossible inodes, names with '/' or NUL, self-parented directories,
    rename cycles, extents outside the data area or over another file's
    data, huge lengths.  Every host rejects each one, says so, changes
    nothing, and goes on replaying what follows."""
    reg = guarded()
    a, b, files = start_pair(mounts, reg, "records")
    os.makedirs(a / "d1" / "d2" / "d3")
    write_bytes(a / "d1" / "file", b"in d1")
    big_data = os.urandom(300_000)
    write_bytes(a / "big", big_data)
    write_bytes(a / "empty", b"")
    files.update({"d1/file": sha(b"in d1"), "big": sha(big_data), "empty": sha(b"")})
    wait_until(lambda: exists(b / "d1" / "d2" / "d3") and exists(b / "empty"), 5)
    unit = reg.dump()["superblock"]["alloc_unit"]
    data_size = reg.dump()["superblock"]["data_size"]
    work = Workload([a, b], seed=8).start()
    work.wait_ok(a.host), work.wait_ok(b.host)

    root, keep = 1, ino_of(a, "keep")
    d1, d2, d3 = ino_of(a, "d1"), ino_of(a, "d1/d2"), ino_of(a, "d1/d2/d3")
    f1 = ino_of(a, "d1/file")
    # a file with data, for extents over it, and an empty one to give extents to
    big_ino, big_ext = extents_of(reg, "big")
    assert big_ext
    empty = "empty"
    empty_ino = ino_of(a, empty)
    new = 50_000_000
    c, link, unl, ren = ed.p_create, ed.p_link, ed.p_unlink, ed.p_rename
    sa, ext, xa = ed.p_setattr, ed.p_extent, ed.p_xattr
    T = ed
    hostile = [
        # creates
        ("parent missing", T.LR_CREATE, c(new, 999_999, S_IFREG | 0o644, b"x")),
        ("inode reused", T.LR_CREATE, c(keep, root, S_IFREG | 0o644, b"x")),
        ("root again", T.LR_CREATE, c(1, 0, S_IFDIR | 0o755, b"")),
        ("inode 0", T.LR_CREATE, c(0, root, S_IFREG | 0o644, b"x")),
        ("last inode number", T.LR_CREATE, c(2**64 - 1, root, S_IFREG | 0o644, b"wrap")),
        ("own parent", T.LR_CREATE, c(new, new, S_IFDIR | 0o755, b"self")),
        ("parent is a file", T.LR_CREATE, c(new, f1, S_IFREG | 0o644, b"x")),
        ("name exists", T.LR_CREATE, c(new, root, S_IFREG | 0o644, b"keep")),
        ("slash in name", T.LR_CREATE, c(new, root, S_IFREG | 0o644, b"a/b")),
        ("NUL in name", T.LR_CREATE, c(new, root, S_IFREG | 0o644, b"a\0b")),
        ("dot", T.LR_CREATE, c(new, root, S_IFDIR | 0o755, b".")),
        ("dotdot", T.LR_CREATE, c(new, root, S_IFDIR | 0o755, b"..")),
        ("empty name", T.LR_CREATE, c(new, root, S_IFREG | 0o644, b"")),
        ("name too long", T.LR_CREATE, c(new, root, S_IFREG | 0o644, b"n" * 256)),
        ("bad type", T.LR_CREATE, c(new, root, 0o170644, b"x")),
        ("mode bits beyond 07777", T.LR_CREATE, c(new, root, S_IFREG | 0o200644, b"x")),
        ("symlink without target", T.LR_CREATE, c(new, root, S_IFLNK | 0o777, b"l")),
        ("NUL in target", T.LR_CREATE, c(new, root, S_IFLNK | 0o777, b"l", target=b"/etc\0x")),
        ("target too long", T.LR_CREATE, c(new, root, S_IFLNK | 0o777, b"l",
                                           target=b"t" * 4097)),
        ("file with a target", T.LR_CREATE, c(new, root, S_IFREG | 0o644, b"l", target=b"x")),
        ("rdev on a file", T.LR_CREATE, c(new, root, S_IFREG | 0o644, b"x", rdev=0x101)),
        ("length mismatch", T.LR_CREATE, c(new, root, S_IFREG | 0o644, b"x") + b"extra"),
        ("short payload", T.LR_CREATE, c(new, root, S_IFREG | 0o644, b"x")[:20]),
        # links and unlinks
        ("link a directory", T.LR_LINK, link(d1, root, b"d1-again")),
        ("link a missing inode", T.LR_LINK, link(new + 1, root, b"ghost")),
        ("link into a file", T.LR_LINK, link(empty_ino, f1, b"x")),
        ("link over a name", T.LR_LINK, link(empty_ino, root, b"keep")),
        ("unlink the wrong inode", T.LR_UNLINK, unl(keep, f1, b"f00")),
        ("unlink a directory", T.LR_UNLINK, unl(root, keep, b"keep")),
        ("rmdir a full directory", T.LR_RMDIR, unl(root, keep, b"keep")),
        ("rmdir a file", T.LR_RMDIR, unl(d1, f1, b"file")),
        ("unlink in a missing directory", T.LR_UNLINK, unl(new + 2, f1, b"file")),
        ("unlink dotdot", T.LR_UNLINK, unl(d1, root, b"..")),
        # renames that would make cycles or lose things
        ("directory into itself", T.LR_RENAME, ren(root, b"d1", d1, b"d1", d1)),
        ("directory into its child", T.LR_RENAME, ren(root, b"d1", d2, b"d1", d1)),
        ("directory into its grandchild", T.LR_RENAME, ren(root, b"d1", d3, b"d1", d1)),
        ("exchange into own subtree", T.LR_RENAME,
         ren(d1, b"d2", root, b"d1", d2, target=d1, flags=2)),
        ("rename with the wrong inode", T.LR_RENAME, ren(root, b"keep", root, b"k2", d1)),
        ("rename over a full directory", T.LR_RENAME, ren(d1, b"d2", root, b"keep", d2,
                                                          target=keep)),
        ("rename with a stale target", T.LR_RENAME, ren(root, b"d1", root, b"keep", d1)),
        ("rename to a slash name", T.LR_RENAME, ren(root, b"d1", root, b"a/b", d1)),
        ("rename onto itself", T.LR_RENAME, ren(root, b"d1", root, b"d1", d1, target=d1)),
        ("noreplace and exchange", T.LR_RENAME, ren(root, b"d1", root, b"keep", d1, target=keep,
                                                    flags=3)),
        # attributes
        ("size of a directory", T.LR_SETATTR, sa(keep, 8, size=1 << 40)),
        ("size beyond off_t", T.LR_SETATTR, sa(empty_ino, 8, size=2**63)),
        ("type bits in mode", T.LR_SETATTR, sa(empty_ino, 1, mode=0o170777)),
        ("nanoseconds out of range", T.LR_SETATTR, sa(empty_ino, 32, mtime=(0, 10**9))),
        ("unknown valid bits", T.LR_SETATTR, sa(empty_ino, 0x80)),
        ("nothing valid", T.LR_SETATTR, sa(empty_ino, 0)),
        ("setattr of a missing inode", T.LR_SETATTR, sa(new + 3, 1, mode=0o777)),
        # extents
        ("extent beyond the data area", T.LR_EXTENT_MAP, ext(empty_ino, 0, data_size, unit)),
        ("extent crossing the end", T.LR_EXTENT_MAP, ext(empty_ino, 0, data_size - unit,
                                                         2 * unit)),
        ("huge extent", T.LR_EXTENT_MAP, ext(empty_ino, 0, 0, 1 << 62)),
        ("extent wrapping around", T.LR_EXTENT_MAP, ext(empty_ino, 0, 2**64 - unit, 2 * unit)),
        ("file offset wrapping", T.LR_EXTENT_MAP, ext(empty_ino, 2**64 - unit, 0, 2 * unit)),
        ("over another file's data", T.LR_EXTENT_MAP, ext(empty_ino, 0, big_ext[0][1],
                                                          big_ext[0][2])),
        ("over its own mapped range", T.LR_EXTENT_MAP, ext(big_ino, big_ext[0][0],
                                                           data_size - unit, unit)),
        ("unaligned extent", T.LR_EXTENT_MAP, ext(empty_ino, 0, 1, unit)),
        ("zero-length extent", T.LR_EXTENT_MAP, ext(empty_ino, 0, 0, 0)),
        ("extent on a directory", T.LR_EXTENT_MAP, ext(keep, 0, data_size - unit, unit)),
        ("extent on a symlink", T.LR_EXTENT_MAP, ext(ino_of(a, "keep/link"), 0,
                                                     data_size - unit, unit)),
        ("unmap with a data offset", T.LR_EXTENT_UNMAP, ext(big_ino, 0, unit, unit)),
        # xattrs and releases
        ("xattr of a missing inode", T.LR_XATTR_SET, xa(new + 4, b"user.x", b"v")),
        ("NUL in xattr name", T.LR_XATTR_SET, xa(empty_ino, b"user.\0x", b"v")),
        ("empty xattr name", T.LR_XATTR_SET, xa(empty_ino, b"", b"v")),
        ("replace a missing xattr", T.LR_XATTR_SET, xa(empty_ino, b"user.none", b"v", flags=2)),
        ("remove a missing xattr", T.LR_XATTR_REMOVE, xa(empty_ino, b"user.none")),
        ("xattr value too large", T.LR_XATTR_SET, xa(empty_ino, b"user.x", bytes(65537))),
        ("release a named file", 11, struct.pack("<Q", empty_ino)),
        ("release the root", 11, struct.pack("<Q", 1)),
        # headers
        ("unknown type", 200, b"whatever"),
        ("noop with flags", T.LR_NOOP, b"", {"flags": 1}),
        ("nonzero header padding", T.LR_CREATE, c(new, root, S_IFREG | 0o644, b"pad"),
         {"pad0": 1}),
    ]
    peer = Peer(reg)
    peer.join()
    seqs = {}
    for what, rtype, payload, *kw in hostile:
        _, seq = peer.publish(rtype, payload, **(kw[0] if kw else {}))
        seqs[seq] = what
    # and a good record after them all: replay went past them
    _, good = peer.publish(T.LR_CREATE, c(new + 10, root, S_IFREG | 0o644, b"after-hostile"))
    peer.close()
    for m in (a, b):
        wait_until(lambda: exists(m / "after-hostile"), 10)
    work.wait_ok(a.host), work.wait_ok(b.host)
    for m in (a, b):
        text = m.logtext()
        missing = [f"{s} ({w})" for s, w in seqs.items() if f"record {s} " not in text]
        assert not missing, f"{m.host} did not report: {missing}\n{text[-2000:]}"
        assert STUCK not in text
    # nothing changed: the tree, the intact files, the directories
    for m in (a, b):
        assert sorted(os.listdir(m / "d1")) == ["d2", "file"]
        assert os.listdir(m / "d1" / "d2") == ["d3"]
        assert not exists(m / "self") and not exists(m / "wrap") and not exists(m / "ghost")
        assert stat.S_ISDIR(os.stat(m / "keep").st_mode)
        assert os.stat(m / empty).st_size == 0
    # still writable everywhere: the inode numbers did not wrap
    for m in (a, b):
        assert try_create([a, b], m, f"late-{m.host}") == "ok"
    finish(mounts, reg, canary, work, [a, b], files)


def test_wellformed_extreme_records_are_served(guarded, mounts, canary):
    """Records that are strange but valid: the largest inode numbers and
    sizes, the longest symlink target, times at the ends of the range,
    device numbers, setuid files, orphans and reservations ahead that
    claim hosts which do not exist.  Daemons serve them without crashing
    or hanging; fsck finds nothing it cannot fix."""
    reg = guarded()
    a, b, files = start_pair(mounts, reg, "extreme")
    unit = reg.dump()["superblock"]["alloc_unit"]
    data_size = reg.dump()["superblock"]["data_size"]
    write_bytes(a / "victim", b"v" * 10)
    write_bytes(a / "ahead", b"a" * 10)
    wait_until(lambda: exists(b / "ahead"), 5)
    victim, ahead = ino_of(a, "victim"), ino_of(a, "ahead")
    work = Workload([a, b], seed=9).start()
    work.wait_ok(a.host), work.wait_ok(b.host)
    T, c = ed, ed.p_create
    peer = Peer(reg)
    peer.join()
    big = 2**63 + 5
    # In one hold of the lock: inode numbers only grow, and the workload
    # goes on creating (a daemon's create in between would take big + 1).
    peer.publish_all([
        (T.LR_CREATE, c(big, 1, S_IFREG | 0o644, b"huge-ino"), {}),
        (T.LR_CREATE, c(big + 1, 1, S_IFREG | 0o644, b"huge-size"), {}),
        (T.LR_SETATTR, ed.p_setattr(big + 1, 8 | 16 | 32, size=2**63 - 1, atime=(-2**63, 0),
                                    mtime=(2**63 - 1, 999_999_999)), {}),
        (T.LR_CREATE, c(big + 2, 1, S_IFLNK | 0o777, b"long-link", target=b"t" * 4096), {}),
        (T.LR_CREATE, c(big + 3, 1, S_IFCHR | 0o666, b"mem", rdev=(1 << 8) | 1), {}),
        (T.LR_CREATE, c(big + 4, 1, S_IFREG | 0o6777, b"setuid-root"), {}),
        (T.LR_XATTR_SET, ed.p_xattr(big + 4, b"security.capability", b"\x01" * 20), {})])
    # a file kept open by a host that does not exist: someone must release it
    peer.publish(T.LR_UNLINK, ed.p_unlink(1, victim, b"victim"), flags=1, host=4095)
    # room reserved ahead by a host that does not exist: someone must trim it
    peer.publish(T.LR_EXTENT_MAP, ed.p_extent(ahead, 64 * unit, data_size - 4 * unit, 4 * unit),
                 flags=2, host=4094)
    peer.close()
    for m in (a, b):
        wait_until(lambda: exists(m / "setuid-root"), 10)
        within("stat of the strange files", [a, b], lambda: [
            os.lstat(m / n) for n in ("huge-ino", "huge-size", "long-link", "mem",
                                      "setuid-root")])
        assert os.lstat(m / "huge-ino").st_ino == big
        st = os.stat(m / "huge-size")
        assert st.st_size == 2**63 - 1
        with open(m / "huge-size", "rb") as f:
            f.seek(2**62)
            assert within("read far into a huge file", [a, b], f.read, 4096) == bytes(4096)
        r = within("readlink of a 4096-byte target", [a, b], attempt, os.readlink, m / "long-link")
        assert r in ("ok", "ENAMETOOLONG", "EIO", "EINVAL"), r
        # the mount is nodev: the device node does not open the host's /dev/mem
        assert attempt(open, m / "mem", "rb") in ("EACCES", "EPERM", "ENXIO")
    # the orphan of the missing host is released, the reservation trimmed
    wait_until(lambda: not exists(a / "victim"), 5)
    work.wait_ok(a.host), work.wait_ok(b.host)
    for m in (a, b):
        assert try_create([a, b], m, f"late-{m.host}") == "ok"
        assert os.stat(m / f"late-{m.host}").st_ino > big
    files["ahead"] = sha(b"a" * 10)
    finish(mounts, reg, canary, work, [a, b], files, damaged=False)
