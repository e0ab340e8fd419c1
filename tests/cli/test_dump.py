# SPDX-License-Identifier: MIT
"""shmfs-dump: read-only, complete, valid JSON, and unbreakable by any
bytes in the region."""
import json
import os
import random
import struct
import time

import pytest

from conftest import make_file
from media import (BACKUP_OFF, HOST_ACTIVE, HOST_JOINING, HOST_TOOL, LR_CREATE, LR_EXTENT_MAP,
                   LR_EXTENT_UNMAP, LR_LINK, LR_NOOP, LR_RENAME, LR_RMDIR, LR_SETATTR, LR_UNLINK,
                   LR_XATTR_REMOVE, LR_XATTR_SET, SEAL_SKIP, Region, file_hash, p_create,
                   p_extent, p_link, p_rename, p_setattr, p_unlink, p_xattr)

MiB = 1 << 20
S_IFREG, S_IFDIR, S_IFLNK = 0o100000, 0o040000, 0o120000


def records(doc, kind=None):
    return [r for r in doc["records"] if kind is None or r["type"] == kind]


def populate(region, n_files=10):
    """A namespace with a few files; returns the Region."""
    r = Region(region)
    for i in range(n_files):
        r.append(LR_CREATE, p_create(100 + i, 1, S_IFREG | 0o644, b"file%03d" % i, uid=1000,
                                     gid=1000))
    return r


def test_dump_is_read_only(tools, formatted):
    r = populate(formatted)
    r.write_host(0, HOST_ACTIVE)
    before = file_hash(formatted)
    mtime = os.stat(formatted).st_mtime_ns
    for args in ([], ["--json"], ["-H"], ["-s"], ["--records", "2"], ["--json", "-H"]):
        p = tools.dump(*args, formatted)
        assert p.returncode == 0, (args, p.out, p.err)
    assert file_hash(formatted) == before
    assert os.stat(formatted).st_mtime_ns == mtime


def test_json_is_complete(tools, formatted):
    populate(formatted, 3)
    d = tools.dump_json(formatted)
    assert d.returncode == 0, d.out
    doc = d.doc
    assert doc["consistent"] is True and doc["errors"] == []
    for key in ("region", "superblock", "control", "hosts", "records", "log", "errors"):
        assert key in doc, key
    sb = doc["superblock"]
    assert sb["valid"] is True and sb["copy"] == "primary"
    assert sb["magic"] == "0x31425353464d4853"
    assert sb["label"] == "test" and sb["uuid"] == "01234567-89ab-cdef-0123-456789abcdef"
    assert sb["mkfs_time"].endswith("Z") and "T" in sb["mkfs_time"]
    assert sb["lease_ms"] == 2000 and sb["heartbeat_ms"] == 200
    root = doc["records"][0]
    assert root["type"] == "create" and root["payload"]["ino"] == 1
    assert [r["seq"] for r in doc["records"]] == [1, 2, 3, 4]
    assert doc["records"][1]["payload"]["name"] == "file000"
    assert doc["records"][1]["payload"]["mode"] == S_IFREG | 0o644
    log = doc["log"]
    assert log["reached_end"] is True and log["records"] == 4
    assert log["end_pos"] == doc["records"][-1]["pos"] + 96  # 40 + 48 + 7, padded to 8


def test_text_output(tools, formatted):
    populate(formatted, 2)
    p = tools.dump(formatted)
    assert p.returncode == 0, p.out + p.err
    assert "uuid" in p.out and "01234567-89ab-cdef-0123-456789abcdef" in p.out
    assert 'name="file001"' in p.out and "mode=0100644" in p.out
    assert "end of log at pos" in p.out and "(3 records," in p.out
    assert "mkfs_time" in p.out and "Z" in p.out


def test_every_record_type_is_decoded(tools, formatted):
    r = Region(formatted)
    unit = r.sb["alloc_unit"]
    r.append(LR_CREATE, p_create(2, 1, S_IFDIR | 0o755, b"dir"))
    r.append(LR_CREATE, p_create(3, 2, S_IFREG | 0o600, b"caf\xc3\xa9 \"q\"\n\x01\xff"))
    r.append(LR_CREATE, p_create(4, 1, S_IFLNK | 0o777, b"ln", target=b"/some/where"))
    r.append(LR_LINK, p_link(3, 1, b"hard"))
    r.append(LR_UNLINK, p_unlink(1, 3, b"hard"))
    r.append(LR_RENAME, p_rename(2, b"caf\xc3\xa9 \"q\"\n\x01\xff", 1, b"moved", 3))
    r.append(LR_SETATTR, p_setattr(3, 0x01 | 0x02 | 0x08 | 0x20, mode=0o640, uid=77,
                                   size=12345, mtime=(1700000000, 5)))
    r.append(LR_EXTENT_MAP, p_extent(3, 0, 4 * unit, 2 * unit, size=12345), flags=1)
    r.append(LR_EXTENT_UNMAP, p_extent(3, unit, 0, unit))
    r.append(LR_XATTR_SET, p_xattr(3, b"user.k", b"value", flags=1))
    r.append(LR_XATTR_REMOVE, p_xattr(3, b"user.k"))
    r.append(LR_NOOP, b"")
    r.append(LR_RMDIR, p_unlink(1, 2, b"dir"))
    seal_pos = r.seal()
    pos, seq = r.append(LR_CREATE, p_create(5, 1, S_IFREG | 0o644, b"after-seal"))
    assert pos == seal_pos + SEAL_SKIP

    d = tools.dump_json(formatted)
    assert d.returncode == 0, (d.doc["errors"], d.err)
    recs = d.doc["records"]
    by_type = {}
    for rec in recs:
        by_type.setdefault(rec["type"], []).append(rec)
    assert by_type["create"][2]["payload"]["name"] == 'caf\u00e9 "q"\n\x01\u00ff'
    assert by_type["create"][3]["payload"]["target"] == "/some/where"
    assert by_type["create"][3]["payload"]["mode"] == S_IFLNK | 0o777
    assert by_type["link"][0]["payload"] == {"ino": 3, "dir": 1, "name": "hard"}
    assert by_type["unlink"][0]["payload"] == {"dir": 1, "ino": 3, "name": "hard"}
    rn = by_type["rename"][0]["payload"]
    assert rn["newname"] == "moved" and rn["olddir"] == 2 and rn["newdir"] == 1
    sa = by_type["setattr"][0]["payload"]
    assert sa["valid"] == "mode,uid,size,mtime"
    assert sa["mode"] == 0o640 and sa["uid"] == 77 and sa["size"] == 12345
    assert sa["mtime"] == "2023-11-14T22:13:20.000000005Z"
    assert "gid" not in sa and "atime" not in sa
    ex = by_type["extent-map"][0]["payload"]
    assert ex == {"ino": 3, "foff": 0, "len": 2 * unit, "doff": 4 * unit, "size": 12345}
    assert by_type["extent-unmap"][0]["payload"]["foff"] == unit
    xs = by_type["xattr-set"][0]["payload"]
    assert xs["xattr"] == "user.k" and xs["value_len"] == 5 and xs["xattr_flags"] == "create"
    assert by_type["xattr-remove"][0]["payload"]["xattr"] == "user.k"
    assert len(by_type["noop"]) == 1 and len(by_type["rmdir"]) == 1
    seal = by_type["seal"][0]
    assert seal["pos"] == seal_pos and seal["seq"] == seq and seal["next_pos"] == pos
    assert recs[-1]["seq"] == seq and recs[-1]["payload"]["name"] == "after-seal"
    assert d.doc["log"]["seals"] == 1

    # The text form escapes the awkward name and shows the seal.
    p = tools.dump(formatted)
    assert p.returncode == 0
    assert r'name="caf\xc3\xa9 \"q\"\x0a\x01\xff"' in p.out
    assert "type=seal" in p.out


def test_malformed_record_is_reported_and_walk_goes_on(tools, formatted):
    r = Region(formatted)
    r.append(LR_CREATE, p_create(2, 1, S_IFREG | 0o644, b"a/b"))     # '/' in a name
    r.append(LR_SETATTR, p_setattr(2, 0x1, mode=0o100644))           # type bits in mode
    r.append(LR_CREATE, p_create(3, 1, S_IFREG | 0o644, b"fine"))
    d = tools.dump_json(formatted)
    assert d.returncode == 1
    assert len(d.doc["records"]) == 4
    assert "malformed" in d.doc["records"][1] and "malformed" in d.doc["records"][2]
    assert "malformed" not in d.doc["records"][3]
    assert sum("malformed" in e for e in d.doc["errors"]) == 2
    assert d.doc["consistent"] is False


def test_random_bytes_in_the_middle_of_the_log(tools, formatted):
    r = populate(formatted, 60)
    d0 = tools.dump_json(formatted).doc
    recs = d0["records"]
    assert len(recs) == 61
    # Smash records 20..22 (by position) with random bytes.
    start, end = recs[20]["pos"] + 3, recs[23]["pos"] - 5
    r.log_write(start, random.Random(5).randbytes(end - start))

    d = tools.dump_json(formatted)
    assert d.returncode == 1
    seqs = [rec["seq"] for rec in d.doc["records"]]
    assert seqs[:20] == list(range(1, 21))
    assert seqs[-38:] == list(range(24, 62))        # everything after the damage
    errs = " | ".join(d.doc["errors"])
    assert "bad record at pos %d" % recs[20]["pos"] in errs
    assert "skipped" in errs
    assert d.doc["log"]["reached_end"] is True

    p = tools.dump(formatted)
    assert p.returncode == 1
    assert "!! bad record at pos" in p.out and "skipped" in p.out
    assert 'name="file059"' in p.out
    assert "problems found" in p.err


def test_erased_record_does_not_hide_the_rest(tools, formatted):
    r = populate(formatted, 20)
    recs = tools.dump_json(formatted).doc["records"]
    r.log_write(recs[10]["pos"], b"\0" * 8)         # its publication word
    d = tools.dump_json(formatted)
    assert d.returncode == 1
    seqs = [rec["seq"] for rec in d.doc["records"]]
    assert seqs == list(range(1, 11)) + list(range(12, 22))
    assert any("beyond the end" in e for e in d.doc["errors"])


def test_sequence_gap_is_reported(tools, formatted):
    r = populate(formatted, 3)
    pos, _ = r.log_end()
    r.log_write(pos, r.record_bytes(9, LR_CREATE, p_create(50, 1, S_IFREG | 0o644, b"x")))
    d = tools.dump_json(formatted)
    assert d.returncode == 1
    assert d.doc["records"][-1]["seq"] == 9
    assert any("sequence jumps from 5 to 9" in e for e in d.doc["errors"])


def test_records_limit(tools, formatted):
    populate(formatted, 10)
    d = tools.dump_json("--records", "3", formatted)
    assert d.returncode == 0
    assert [rec["seq"] for rec in d.doc["records"]] == [1, 2, 3]
    assert d.doc["log"]["limited"] is True
    p = tools.dump("--records", "3", formatted)
    assert "--records" in p.out


def test_hosts(tools, formatted):
    r = Region(formatted)
    r.write_host(0, HOST_ACTIVE, name=b"alpha", hostname=b"node-a", pid=1234, heartbeat=99,
                 applied=7, pin=3)
    r.write_host(5, HOST_TOOL, name=b"mkfs", token=0x55)
    d = tools.dump_json("-H", formatted)
    assert d.returncode == 0, d.doc["errors"]
    assert "superblock" not in d.doc and "records" not in d.doc
    hosts = d.doc["hosts"]
    assert [h["slot"] for h in hosts] == [0, 5]
    h = hosts[0]
    assert h["state"] == "active" and h["name"] == "alpha" and h["hostname"] == "node-a"
    assert h["pid"] == 1234 and h["heartbeat"] == 99 and h["applied_seq"] == 7
    assert h["pin_seq"] == 3 and h["ident_ok"] is True and h["heartbeat_time"].endswith("Z")
    assert hosts[1]["state"] == "tool"

    p = tools.dump("-H", formatted)
    assert p.returncode == 0
    assert 'name="alpha"' in p.out and "(2 of 64 host slots in use)" in p.out


def test_bad_host_slots(tools, formatted):
    r = Region(formatted)
    r.write_host(1, HOST_ACTIVE, good_ident=False)
    r.write_host(2, 9)
    r.write_host(3, HOST_JOINING, good_ident=False)     # still writing its identity: fine
    r.write(HOSTS_OFF_FOR_TEST(4), random.Random(1).randbytes(256))
    d = tools.dump_json(formatted)
    assert d.returncode == 1
    errs = " | ".join(d.doc["errors"])
    assert "host slot 1" in errs and "identity checksum" in errs
    assert "host slot 2 has an invalid state 9" in errs
    assert [h["state"] for h in d.doc["hosts"]][:2] == ["active", "invalid(9)"]
    assert "host slot 3" not in errs
    assert len(d.doc["records"]) == 1                  # the log is still dumped


def HOSTS_OFF_FOR_TEST(i):
    return 12288 + i * 256


def test_super_only(tools, formatted):
    d = tools.dump_json("-s", formatted)
    assert d.returncode == 0
    assert "superblock" in d.doc and "hosts" not in d.doc and "records" not in d.doc


def test_bitflipped_primary_falls_back_to_backup(tools, formatted):
    populate(formatted, 2)
    r = Region(formatted)
    raw = bytearray(r.read(0, 512))
    raw[200] ^= 0x04                                   # sb_data_size
    r.write(0, raw)
    d = tools.dump_json(formatted)
    assert d.returncode == 1
    sb = d.doc["superblock"]
    assert sb["copy"] == "backup" and sb["valid"] is True
    assert "primary" in sb["other_copy"] and "checksum" in sb["other_copy"]
    assert any("primary superblock" in e for e in d.doc["errors"])
    assert len(d.doc["records"]) == 3

    p = tools.dump(formatted)
    assert "backup" in p.out and "checksum" in p.out


def test_both_superblocks_bad(tools, formatted):
    r = Region(formatted)
    for off in (0, BACKUP_OFF):
        raw = bytearray(r.read(off, 512))
        raw[100] ^= 1
        r.write(off, raw)
    d = tools.dump_json(formatted)
    assert d.returncode == 1
    assert d.doc["superblock"]["valid"] is False
    assert "records" not in d.doc
    p = tools.dump(formatted)
    assert p.returncode == 1 and "checksum" in p.out


def test_superblock_geometry_lies(tools, formatted):
    # Checksums are right, but the log runs far past the region.
    Region(formatted).patch_super(log_size=32 << 30)
    d = tools.dump_json(formatted)
    assert d.returncode == 1
    assert d.doc["superblock"]["valid"] is False
    assert "records" not in d.doc and "hosts" not in d.doc
    Region(formatted).patch_super(log_off=1 << 40)
    assert tools.dump_json(formatted).returncode == 1


def test_not_a_filesystem(tools, region):
    make_file(region, 1 * MiB)
    p = tools.dump(region)
    assert p.returncode == 1
    assert "no shmfs superblock" in p.out + p.err
    d = tools.dump_json(region)
    assert d.returncode == 1 and d.doc["consistent"] is False
    assert d.doc["superblock"] is None and "records" not in d.doc
    assert any("no shmfs superblock" in e for e in d.doc["errors"])


def test_truncated_region(tools, formatted):
    populate(formatted, 3)
    os.truncate(formatted, 32 * MiB)
    d = tools.dump_json(formatted)
    assert d.returncode == 1
    assert any("truncated" in e for e in d.doc["errors"])
    assert len(d.doc["records"]) == 4                   # the log is inside what is left

    os.truncate(formatted, 2 * MiB)                      # the log is cut off too
    d = tools.dump_json(formatted)
    assert d.returncode == 1
    assert any("cut off" in e for e in d.doc["errors"])
    assert len(d.doc["records"]) == 4

    os.truncate(formatted, 8192)
    p = tools.dump(formatted)
    assert p.returncode == 1 and "too small" in p.out + p.err


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("size", [4096, 12288 + 4096, 64 * 1024, 1 * MiB, 4 * MiB])
def test_garbage_never_crashes(tools, region, seed, size):
    make_file(region, size, random.Random(seed * 1000 + size).randbytes(size))
    for args in ([], ["--json"]):
        p = tools.dump(*args, region, timeout=20)
        assert p.returncode == 1, (p.returncode, p.err)
    tools.dump_json(region)


def test_garbage_after_a_valid_superblock(tools, formatted):
    """Host table and log full of random bytes: everything is reported,
    nothing crashes, the walk ends."""
    r = Region(formatted)
    rnd = random.Random(3)
    r.write(12288, rnd.randbytes(r.sb["log_off"] - 12288))
    r.log_write(0, rnd.randbytes(r.sb["log_size"]))
    t0 = time.monotonic()
    d = tools.dump_json(formatted, timeout=30)
    print(f"dump of a garbage log took {time.monotonic() - t0:.2f} s")
    assert d.returncode == 1
    assert d.doc["errors"]


def test_near_records_everywhere_are_bounded(tools, formatted):
    """A log where every 8 bytes look like the start of a big record: the
    resynchronisation scan must give up or finish, not grind forever."""
    r = Region(formatted)
    word = struct.pack("<QHHI", 1, 1, 0, 60000)
    r.log_write(0, word * (r.sb["log_size"] // len(word)))
    t0 = time.monotonic()
    d = tools.dump_json(formatted, timeout=60)
    print(f"dump of a near-record log took {time.monotonic() - t0:.2f} s")
    assert d.returncode == 1


def test_usage_errors(tools, formatted):
    assert tools.dump().returncode == 2
    assert tools.dump("--records", "x", formatted).returncode == 2
    assert tools.dump("--records", "0", formatted).returncode == 2
    p = tools.dump("--bogus", formatted)
    assert p.returncode == 2 and "--help" in p.err
    assert tools.dump(formatted, "extra").returncode == 2
    assert tools.dump("-H", "-s", formatted).returncode == 2
    assert tools.dump("--help").returncode == 0
    assert tools.dump("-V").returncode == 0


def test_missing_region(tools, region):
    p = tools.dump(region)
    assert p.returncode == 1
    assert p.err.startswith("shmfs-dump: ") and len(p.err.splitlines()) == 1


def test_json_escapes_any_bytes(tools, formatted):
    r = Region(formatted)
    names = [bytes([b]) for b in range(1, 256) if b not in (0x2F, 0x2E)]
    names += [b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe2\x82", b"ok\xe2\x82\xac"]
    for i, n in enumerate(names):
        r.append(LR_CREATE, p_create(10 + i, 1, S_IFREG | 0o644, n))
    p = tools.dump("--json", formatted)
    assert p.returncode == 0, p.err
    doc = json.loads(p.stdout.decode("utf-8"))          # strict: valid UTF-8 and JSON
    got = [rec["payload"]["name"] for rec in doc["records"][1:]]
    assert got[names.index(b"A")] == "A"
    assert got[names.index(b"\xff")] == "\u00ff"
    assert got[names.index(b"\n")] == "\n"
    assert got[names.index(b"\xed\xa0\x80")] == "\u00ed\u00a0\u0080"  # a surrogate: not UTF-8
    assert got[-1] == "ok\u20ac"
    assert len(got) == len(names)
