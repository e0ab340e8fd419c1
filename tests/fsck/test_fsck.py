# SPDX-License-Identifier: MIT
"""fsck.shmfs: exit codes, what it finds, what it repairs, and that a
repaired region mounts and checks clean."""
import errno
import os
import random
import struct
import time

import pytest

from conftest import (CORRECTED, OK, OPERATIONAL, UNCORRECTED, USAGE, check_fixed, codes, fsck,
                      populate, run)
from media import (BACKUP_OFF, CTL_OFF, F_KEEP, HOST_ACTIVE, HOST_FREE, HOST_SLOT, HOSTS_OFF,
                   LOCK_SHIFT, LR_CREATE, LR_EXTENT_MAP, LR_HDR, LR_NOOP, LR_SEAL, LR_UNLINK,
                   S_IFREG, SEAL_SKIP, Region, file_hash, p_create, p_extent, p_unlink,
                   stride, xxh3)


# ---- command line -----------------------------------------------------------------

def test_usage_errors(region):
    assert fsck().rc == USAGE
    assert fsck("-n", "-y", region).rc == USAGE
    assert fsck("-p", "-n", region).rc == USAGE
    assert fsck("--bogus", region).rc == USAGE
    assert fsck("-n", region, "extra").rc == USAGE
    r = fsck("-h")
    assert r.rc == OK and "Usage" in r.out
    r = fsck("-V")
    assert r.rc == OK and "fsck.shmfs" in r.out
    # -f and -v are accepted
    assert fsck("-n", "-f", "-v", region).rc == OK


def test_not_a_region(scratch):
    path = scratch / "zeros.img"
    with open(path, "wb") as f:
        f.truncate(16 << 20)
    r = fsck("-n", path)
    assert r.rc == OPERATIONAL and "no shmfs superblock" in r.err
    assert fsck("-y", "--json", path).doc["operational_error"] is True
    assert fsck("-n", scratch / "missing.img").rc == OPERATIONAL


# ---- a clean region ---------------------------------------------------------------------

def test_clean(region):
    populate(region, 5)
    for mode in ("-n", "-p", "-y"):
        r = fsck(mode, "--json", region)
        assert r.rc == OK, repr(r)
        assert r.doc["clean"] and r.doc["problems"] == [] and not r.doc["modified"]
        s = r.doc["summary"]
        assert s["records"] == 6 and s["inodes"] == 6 and s["files"] == 5
        assert s["directories"] == 1 and s["rejected"] == 0
    r = fsck("-n", region)
    assert "clean" in r.out and "6 records" in r.out


def test_n_never_writes(region):
    """-n opens read-only and changes no byte, whatever it finds."""
    r, _ = populate(region, 5)
    r.write_host(3, HOST_ACTIVE)                       # stale slot
    r.write(BACKUP_OFF + 40, b"\xff")                   # bad backup
    pos, _ = r.log_end()
    r.log_write(pos + 4096, os.urandom(64))             # junk after the end
    before = file_hash(region)
    mtime = os.stat(region).st_mtime_ns
    for args in (["-n"], ["-n", "--json"], ["-n", "-v"], ["-n", "--force"]):
        p = fsck(*args, region)
        assert p.rc == UNCORRECTED, repr(p)
    assert file_hash(region) == before
    assert os.stat(region).st_mtime_ns == mtime


# ---- superblocks ---------------------------------------------------------------------

@pytest.mark.parametrize("which", ["primary", "backup"])
def test_bad_superblock(region, which):
    populate(region, 3)
    Region(region).write((0 if which == "primary" else BACKUP_OFF) + 100, b"\xee\xff")
    r, r2 = check_fixed(region, "sb_checksum")
    p = [p for p in r.doc["problems"] if p["code"] == "sb_checksum"][0]
    assert which in p["location"]
    assert r2.doc["problems"][0]["repaired"]
    raw = Region(region)
    assert raw.read(0, 4096) == raw.read(BACKUP_OFF, 4096)


def test_bad_superblock_preen(region):
    populate(region, 3)
    Region(region).write(BACKUP_OFF + 8, b"\x07")  # sb_version, checksum now wrong
    check_fixed(region, "sb_checksum", mode="-p")


def test_both_superblocks_bad(region):
    raw = Region(region)
    raw.write(100, b"\xee")
    raw.write(BACKUP_OFF + 100, b"\xee")
    for mode in ("-n", "-p", "-y"):
        r = fsck(mode, region)
        assert r.rc == OPERATIONAL, repr(r)
        assert "both superblocks" in r.err and "primary" in r.err and "backup" in r.err


def test_backup_differs(region):
    """Both copies valid but different: the backup is rewritten."""
    raw = Region(region)
    sb = bytearray(raw.read(BACKUP_OFF, 512))
    sb[56:60] = b"diff"                                 # the label
    struct.pack_into("<Q", sb, 504, xxh3(sb[:504], 0))
    raw.write(BACKUP_OFF, sb)
    check_fixed(region, "sb_checksum", mode="-p")


# ---- control page and host table ------------------------------------------------------

def test_ctl_magic(region, daemons):
    populate(region, 2)
    Region(region).write(CTL_OFF, b"\0" * 8)
    check_fixed(region, "ctl_magic", mode="-p")
    d = daemons(region)
    assert d.listdir() == ["file000", "file001"]


def test_garbage_in_free_slot(region):
    Region(region).write(HOSTS_OFF + 5 * HOST_SLOT, b"\0" * 40 + b"\0\0\0\0" + os.urandom(200))
    check_fixed(region, "hs_pins", mode="-p")
    assert Region(region).host(5)["raw"] == b"\0" * HOST_SLOT


def test_stale_slots(make_region):
    region = make_region("64M", "--lease-ms", "400")
    r = Region(region)
    r.write_host(1, HOST_ACTIVE, name=b"gone")
    r.write_host(2, 7)                                  # invalid state
    r.write_host(3, HOST_ACTIVE)
    r.write(HOSTS_OFF + 3 * HOST_SLOT + 100, b"X")      # identity no longer matches
    a, b = check_fixed(region, "hs_heartbeat", "hs_state", "hs_ident_csum", mode="-p")
    stale = [p for p in a.doc["problems"] if p["code"] == "hs_heartbeat"][0]
    assert '"gone"' in stale["message"] and "pid 42" in stale["message"]
    for i in (1, 2, 3):
        assert r.host(i)["state"] == HOST_FREE


def test_stale_slot_of_killed_daemon(make_region, daemons):
    region = make_region("64M", "--lease-ms", "400")
    d = daemons(region)
    for i in range(20):
        (d.mnt / f"f{i}").write_bytes(b"x" * (i * 1000))
    os.sync()
    d.kill9()
    r = fsck("-n", "--json", region)
    assert r.rc == UNCORRECTED and "hs_heartbeat" in codes(r), repr(r)
    check_fixed(region, "hs_heartbeat", mode="-p")
    d2 = daemons(region)
    names = d2.listdir()
    assert names == sorted(f"f{i}" for i in range(20))
    for i in range(20):
        assert (d2.mnt / f"f{i}").read_bytes() == b"x" * (i * 1000)


def test_live_daemon_refuses_repair(make_region, daemons):
    region = make_region("64M")
    d = daemons(region, "-o", "host=alpha")
    (d.mnt / "a").write_text("hello")
    # Nothing wrong: clean, even with repairs asked for.
    r = fsck("-y", "--json", region)
    assert r.rc == OK and r.doc["live_hosts"] and not r.doc["refused"], repr(r)
    # Something wrong: found, but not repaired while alpha holds its lease.
    Region(region).write(BACKUP_OFF + 100, b"\xee")
    before = file_hash(region)  # the daemon does not touch the backup
    r = fsck("-y", region)
    assert r.rc == UNCORRECTED, repr(r)
    assert "not repairing" in r.err and '"alpha"' in r.err and "host slot 0" in r.err
    assert f"pid {d.proc.pid}" in r.err and "mounted since" in r.err
    r = fsck("-p", "--force", region)                   # --force without -y or a terminal
    assert r.rc == UNCORRECTED and "not repairing" in r.err, repr(r)
    assert Region(region).read(BACKUP_OFF, 512) != Region(region).read(0, 512)
    # --force -y proceeds.
    r = fsck("-y", "--force", "--json", region)
    assert r.rc == CORRECTED, repr(r)
    assert fsck("-n", region).rc == OK
    assert (d.mnt / "a").read_text() == "hello"
    (d.mnt / "b").write_text("still works")
    assert d.listdir() == ["a", "b"]


# ---- the log ------------------------------------------------------------------------------

def test_torn_tail(region, daemons):
    """Random nonzero bytes where the next record would go: cut off."""
    r, names = populate(region, 10)
    pos, seq = r.log_end()
    junk = bytearray(os.urandom(3000))
    struct.pack_into("<Q", junk, 0, seq)                # published, but garbage
    r.log_write(pos, junk)
    a, b = check_fixed(region, "lr_csum", mode="-p")
    assert fsck("-n", region).rc == OK
    assert r.log_end() == (pos, seq)
    d = daemons(region)
    assert d.listdir() == names
    (d.mnt / "new").write_text("appended after the repair")
    d.stop()
    assert fsck("-n", region).rc == OK


def test_random_garbage_tail(region, daemons):
    """Any random bytes at the end of the log (whatever their first word)."""
    r, names = populate(region, 10)
    pos, _ = r.log_end()
    rnd = random.Random(5)
    r.log_write(pos, bytes(rnd.randrange(1, 256) for _ in range(5000)))
    check_fixed(region, mode="-p")
    d = daemons(region)
    assert d.listdir() == names


def test_junk_after_the_end(region):
    """The log ends cleanly, but bytes beyond its end are not zero."""
    r, names = populate(region, 4)
    pos, _ = r.log_end()
    r.log_write(pos + 8192, b"\x01" * 100)
    a, _ = check_fixed(region, "lr_seq", mode="-p")
    assert "not zero" in a.doc["problems"][0]["message"]
    assert r.log_read(pos + 8192, 100) == b"\0" * 100


def test_middle_corruption(region, daemons):
    """A damaged record in the middle: -p leaves it, -y bridges it with a
    NOOP of the same length; the records after it survive."""
    r, names = populate(region, 10)
    recs = r.records()
    pos, seq, _, plen = recs[4]                         # file003
    r.log_write(pos + LR_HDR + 20, b"\x55")             # payload byte: checksum fails
    n = fsck("-n", "--json", region)
    assert n.rc == UNCORRECTED and "lr_csum" in codes(n), repr(n)
    msg = n.doc["problems"][0]["message"]
    assert "file003" in msg and "NOOP" in msg, msg
    p = fsck("-p", region)                              # not safe: left alone
    assert p.rc == UNCORRECTED and "-y" in p.out, repr(p)
    y = fsck("-y", "--json", region)
    assert y.rc == CORRECTED, repr(y)
    assert fsck("-n", region).rc == OK
    after = r.records()
    assert len(after) == len(recs)
    assert after[4][0] == pos and after[4][1] == seq and after[4][2] == LR_NOOP
    assert stride(after[4][3]) == stride(plen)
    d = daemons(region)
    assert d.listdir() == [x for x in names if x != "file003"]


def test_middle_corruption_spanning_records(region, daemons):
    """Garbage over three records (headers included): bridged by three NOOPs."""
    r, names = populate(region, 12)
    recs = r.records()
    start, end = recs[3][0], recs[6][0]                 # file002 .. file004
    r.log_write(start, os.urandom(end - start))
    y = fsck("-y", "--json", region)
    assert y.rc == CORRECTED, repr(y)
    assert fsck("-n", region).rc == OK
    kinds = [t for _, _, t, _ in r.records()]
    assert kinds[3:6] == [LR_NOOP] * 3
    d = daemons(region)
    assert d.listdir() == [x for x in names if x not in ("file002", "file003", "file004")]


def test_rejected_record(region, daemons):
    """A record whose checksum is right but that replay rejects: reported with
    the inode and name, rewritten as a NOOP, and the log goes on."""
    r, names = populate(region, 3)
    pos, seq = r.create(50, b"orphaned-child", parent=777)  # no directory 777
    r.append(LR_EXTENT_MAP, p_extent(3, 0, 0, 1 << 20))     # inode 3 = file001: fine
    r.create(51, b"after")
    n = fsck("-n", "--json", region)
    assert n.rc == UNCORRECTED, repr(n)
    bad = [p for p in n.doc["problems"] if p["code"] == "lr_create"]
    assert len(bad) == 1, repr(n)
    assert "orphaned-child" in bad[0]["message"] and "inode 50" in bad[0]["message"]
    assert f"pos {pos}" in bad[0]["location"] and f"record {seq}" in bad[0]["location"]
    assert n.doc["summary"]["rejected"] == 1
    check_fixed(region, "lr_create", mode="-p")
    rec = [x for x in r.records() if x[0] == pos][0]
    assert rec[2] == LR_NOOP and rec[1] == seq
    d = daemons(region)
    assert d.listdir() == sorted(names + ["after"])


def test_rejected_extent_names_the_file(region):
    r, names = populate(region, 3)
    unit = r.sb["alloc_unit"]
    r.append(LR_EXTENT_MAP, p_extent(2, 0, 0, unit), flags=1)
    r.append(LR_EXTENT_MAP, p_extent(3, 0, 0, unit))        # the same data: overlap
    n = fsck("-n", "--json", region)
    bad = [p for p in n.doc["problems"] if p["code"] == "lr_extent"]
    assert len(bad) == 1 and "/file001" in bad[0]["message"], repr(n)
    check_fixed(region, "lr_extent", mode="-p")


def test_flipped_sequence_word(region, daemons):
    r, names = populate(region, 8)
    pos = r.records()[3][0]
    word = r.log_read(pos, 8)
    r.log_write(pos, bytes([word[0] ^ 0x40]) + word[1:])
    check_fixed(region, "lr_seq", mode="-p")
    assert daemons(region).listdir() == names


def test_zeroed_sequence_word(region, daemons):
    """A record's lr_seq zeroed: the log seems to end early, but what follows
    verifies, so the word is put back and nothing is lost."""
    r, names = populate(region, 8)
    pos = r.records()[3][0]
    r.log_write(pos, b"\0" * 8)
    a, _ = check_fixed(region, "lr_seq", mode="-p")
    assert daemons(region).listdir() == names


def test_sequence_jump_is_cut(region):
    """A record that verifies with the wrong sequence number: nothing can
    bridge to it, so only -y cuts the log there, listing what is lost."""
    r, names = populate(region, 6)
    recs = r.records()
    pos, seq, rtype, plen = recs[4]
    payload = r.log_read(pos + LR_HDR, plen)
    r.log_write(pos, r.record_bytes(seq + 5, rtype, payload))
    n = fsck("-n", "--json", region)
    assert n.rc == UNCORRECTED and n.doc["summary"]["lost"] >= 3, repr(n)
    assert fsck("-p", region).rc == UNCORRECTED
    y = fsck("-y", region)
    assert y.rc == CORRECTED, repr(y)
    assert fsck("-n", region).rc == OK
    assert len(r.records()) == 4


def test_orphan_of_dead_host(region):
    r, _ = populate(region, 2)
    unit = r.sb["alloc_unit"]
    r.append(LR_EXTENT_MAP, p_extent(3, 0, 0, 2 * unit, 2 * unit), flags=1)
    r.append(LR_UNLINK, p_unlink(1, 3, b"file001"), flags=F_KEEP, host=5)
    n, y = check_fixed(region, "rl_ino", mode="-p")
    assert n.doc["summary"]["orphans"] == 1 and n.doc["summary"]["bytes_used"] == 2 * unit
    assert fsck("-n", "--json", region).doc["summary"]["bytes_used"] == 0


def test_leaked_preallocation(make_region):
    """A writer killed before its last close keeps units beyond EOF."""
    region = make_region("64M", "--lease-ms", "400")
    p = run("fsck-test-helper", "prealloc", region, "big", 300000)
    assert p.rc == 0, repr(p)
    n, y = check_fixed(region, "ex_foff", "hs_heartbeat", mode="-p")
    leak = [p for p in n.doc["problems"] if p["code"] == "ex_foff"][0]
    assert "/big" in leak["message"]


def test_dead_lock_holder(make_region, daemons):
    """The lock held by a host that died mid-append: released, and the slot
    where its record was going is sealed, as a lock breaker would."""
    region = make_region("64M", "--lease-ms", "400")
    r, names = populate(region, 3)
    r.write_host(2, HOST_ACTIVE, name=b"holder")
    r.set_lock((3 << LOCK_SHIFT) | 41)
    pos, seq = r.log_end()
    half = r.record_bytes(seq, LR_CREATE, p_create(9, 1, S_IFREG | 0o644, b"half"))
    r.log_write(pos + 8, half[8:])                      # written, never published
    n, y = check_fixed(region, "ctl_lock", "hs_heartbeat", mode="-p")
    assert r.lock_word() >> LOCK_SHIFT == 0            # free (fsck took and released it)
    assert struct.unpack("<Q", r.log_read(pos, 8))[0] == LR_SEAL | seq
    d = daemons(region)
    (d.mnt / "new").write_text("x")
    assert d.listdir() == sorted(names + ["new"])
    d.stop()
    assert fsck("-n", region).rc == OK
    assert [x[0] for x in r.records() if x[0] >= pos][0] == pos + SEAL_SKIP


def test_mixed_exit_code(region):
    """-p repairs the safe problem and leaves the other: 1 | 4."""
    r, _ = populate(region, 6)
    r.write(BACKUP_OFF + 100, b"\xee")
    pos = r.records()[3][0]
    r.log_write(pos + LR_HDR + 3, b"\x99")
    p = fsck("-p", "--json", region)
    assert p.rc == CORRECTED | UNCORRECTED, repr(p)
    fixed = {x["code"]: x["repaired"] for x in p.doc["problems"] if not x["after_repair"]}
    assert fixed == {"sb_checksum": True, "lr_csum": False}
    assert fsck("-y", region).rc == CORRECTED
    assert fsck("-n", region).rc == OK


def test_repaired_region_mounts_after_many_kinds_of_damage(make_region, daemons):
    region = make_region("64M", "--lease-ms", "400")
    d = daemons(region)
    for i in range(30):
        (d.mnt / f"f{i:02d}").write_bytes(bytes([i]) * (5000 * i))
    os.mkdir(d.mnt / "dir")
    (d.mnt / "dir" / "inner").write_text("inner")
    os.sync()
    d.kill9()
    r = Region(region)
    r.write(0 + 200, b"\x01")                           # primary superblock
    recs = r.records()
    pos = recs[len(recs) // 2][0]
    r.log_write(pos + 24, b"\xff\xff")                # lr_time of a record in the middle
    end, seq = r.log_end()
    r.log_write(end, struct.pack("<Q", seq) + os.urandom(500))  # torn tail
    y = fsck("-y", "--json", region)
    assert y.rc == CORRECTED, repr(y)
    assert fsck("-n", region).rc == OK
    reported = " ".join(p["message"] for p in y.doc["problems"])
    d2 = daemons(region)
    names = d2.listdir()
    assert "dir" in names and len(names) >= 25
    assert (d2.mnt / "dir" / "inner").read_text() == "inner"
    for i in range(30):
        n = f"f{i:02d}"
        if n not in names:
            assert f"\"{n}\"" in reported, n       # a lost create names the file
            continue
        data = (d2.mnt / n).read_bytes()
        if data != bytes([i]) * (5000 * i):
            # a lost extent or size record: the file is named in the report
            assert f"/{n}" in reported, (n, data[:8], len(data), repr(y))


# ---- scale -------------------------------------------------------------------------------

def test_100k_files(make_region, capsys):
    region = make_region("512M")
    t0 = time.monotonic()
    p = run("fsck-test-helper", "create", region, 100000, 1000)
    assert p.rc == 0, repr(p)
    made = time.monotonic() - t0
    t0 = time.monotonic()
    r = fsck("-n", "--json", region)
    took = time.monotonic() - t0
    assert r.rc == OK, repr(r)
    s = r.doc["summary"]
    assert s["files"] == 100000 and s["directories"] == 101 and s["inodes"] == 100101
    t0 = time.monotonic()
    assert fsck("-p", region).rc == OK
    took_p = time.monotonic() - t0
    with capsys.disabled():
        print(f"\n100,000 files: created in {made:.2f} s; fsck -n {took:.2f} s "
              f"(its own count {s['seconds']:.2f} s), fsck -p {took_p:.2f} s")


# ---- on a terminal ----------------------------------------------------------------------

def _on_terminal(args, answers, timeout=30):
    """Run fsck.shmfs with a pty as stdin/stdout/stderr, answering each
    "[y/N]" prompt in turn; returns (exit status, everything printed)."""
    import pty
    import select
    import subprocess
    from conftest import BIN
    master, slave = pty.openpty()
    p = subprocess.Popen([str(BIN / "fsck.shmfs"), *map(str, args)], stdin=slave,
                         stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out, answers = b"", list(answers)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if out.rstrip().endswith(b"[y/N]") and answers:
                os.write(master, answers.pop(0) + b"\n")
        elif p.poll() is not None:
            break
    os.close(master)
    return p.wait(5), out.decode("utf-8", "replace")


def test_asks_on_a_terminal(region):
    r, _ = populate(region, 3)
    r.write(BACKUP_OFF + 100, b"\xee")
    rc, out = _on_terminal([region], [b"n"])
    assert rc == UNCORRECTED and "Repair? [y/N]" in out, out
    rc, out = _on_terminal([region], [b"y"])
    assert rc == CORRECTED, out
    assert fsck("-n", region).rc == OK


def test_orphan_of_killed_daemon(make_region, daemons, capsys):
    """Host a unlinks a file it has open (kept as its orphan) and is killed;
    host b goes on.  fsck then frees a's slot and releases the orphan, if b
    has not released it already."""
    region = make_region("64M", "--lease-ms", "400")
    a = daemons(region, "-o", "host=a")
    b = daemons(region, "-o", "host=b")
    f = open(a.mnt / "kept", "wb")
    f.write(b"k" * 100000)
    f.flush()
    os.fsync(f.fileno())
    os.unlink(a.mnt / "kept")
    a.kill9()
    try:
        f.close()
    except OSError:
        pass
    time.sleep(3)                                       # several leases, b's reap cycle
    b.stop()
    n = fsck("-n", "--json", region)
    with capsys.disabled():
        print(f"\nafter a host was killed, fsck found: {sorted(set(codes(n)))}")
    assert "hs_heartbeat" in codes(n), repr(n)
    check_fixed(region, "hs_heartbeat", mode="-p")
    assert fsck("-n", "--json", region).doc["summary"]["orphans"] == 0


@pytest.mark.parametrize("damage", [b"\0" * 8, b"\x34\x12" + b"\0" * 6])
def test_damaged_seal(region, daemons, damage):
    """A seal word zeroed or overwritten: the record one seal skip later
    proves what it was, and it is put back."""
    r, names = populate(region, 3)
    pos, seq = r.log_end()
    r.log_write(pos, struct.pack("<Q", LR_SEAL | seq))
    r.create(10, b"after-seal")
    assert r.records()[-1][0] == pos + SEAL_SKIP
    r.log_write(pos, damage)
    n, _ = check_fixed(region, "lr_seq", mode="-p")
    assert "seal" in n.doc["problems"][0]["message"]
    assert struct.unpack("<Q", r.log_read(pos, 8))[0] == LR_SEAL | seq
    assert daemons(region).listdir() == sorted(names + ["after-seal"])


def test_mounted_daemon_resumes_after_forced_repair(region, daemons):
    """A published record that fails its checksum stops a mounted daemon's
    replay (it serves what it has, refuses changes with EIO and says so);
    once fsck --force -y has cut the bad tail off, the daemon goes on
    without a remount."""
    r, names = populate(region, 6)
    d = daemons(region, "-o", "host=alpha")
    assert d.listdir() == names
    pos, seq = r.log_end()
    junk = bytearray(os.urandom(2000))
    struct.pack_into("<Q", junk, 0, seq)
    r.log_write(pos, junk)
    deadline = time.monotonic() + 10
    while "log replay stopped" not in d.output():
        assert time.monotonic() < deadline, d.output()
        time.sleep(0.01)
    assert d.listdir() == names                         # still serving
    with pytest.raises(OSError) as e:
        (d.mnt / "refused").write_text("x")
    assert e.value.errno == errno.EIO
    y = fsck("-y", "--force", "--json", region)
    assert y.rc == CORRECTED and "lr_csum" in codes(y), repr(y)
    (d.mnt / "after").write_text("written after the repair")
    assert "log replay resumed" in d.output()
    assert d.listdir() == sorted(names + ["after"])
    d.stop()
    assert fsck("-n", region).rc == OK
