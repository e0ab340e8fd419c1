# SPDX-License-Identifier: MIT
"""mkfs.shmfs: formats what it is asked to, refuses what it must, and never
writes anything when it refuses."""
import os
import random
import struct
import time

import pytest

from conftest import make_file
from media import BACKUP_OFF, Region, file_hash

UUID = "01234567-89ab-cdef-0123-456789abcdef"
MiB = 1 << 20


def pattern(n, seed=1):
    """Deterministic filler that carries no known signature."""
    return random.Random(seed).randbytes(n)


def one_error_line(p, *words):
    """The tool failed with exactly one line on stderr naming the problem."""
    assert p.returncode != 0
    lines = p.err.splitlines()
    assert len(lines) == 1, p.err
    assert lines[0].startswith("mkfs.shmfs: "), lines[0]
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])


def test_format_then_dump_shows_label_and_uuid(tools, region):
    p = tools.mkfs("--size", "64M", "-L", "my label", "-U", UUID, region)
    assert p.returncode == 0, p.err
    assert p.err == ""
    for word in (UUID, '"my label"', "alloc unit", "max hosts", "superblock", "control",
                 "backup super", "host table", "log", "data area:"):
        assert word in p.out, word
    assert os.path.getsize(region) == 64 * MiB

    d = tools.dump_json(region)
    assert d.returncode == 0, d.out + d.err
    sb = d.doc["superblock"]
    assert sb["uuid"] == UUID
    assert sb["label"] == "my label"
    assert sb["region_size"] == 64 * MiB
    assert sb["version"] == 1
    assert d.doc["errors"] == []

    root = d.doc["records"][0]
    assert root["type"] == "create" and root["seq"] == 1
    assert root["payload"]["ino"] == 1 and root["payload"]["parent"] == 0
    assert root["payload"]["mode"] == 0o40755
    assert root["payload"]["uid"] == os.getuid()
    assert root["payload"]["gid"] == os.getgid()


def test_layout_is_printed_with_exact_bytes(tools, region):
    p = tools.mkfs("--size", "64M", "--alloc-unit", "64K", "--max-hosts", "8",
                   "--log-size", "1M", "--lease-ms", "5000", region)
    assert p.returncode == 0, p.err
    sb = Region(region).sb
    for value in (sb["log_off"], sb["log_size"], sb["data_off"], sb["data_size"], 65536):
        assert str(value) in p.out
    assert "5000 ms" in p.out
    assert f"{sb['data_size'] // 65536} units of 64 KiB" in p.out
    assert sb["max_hosts"] == 8 and sb["log_size"] == MiB and sb["alloc_unit"] == 65536


def test_bad_uuid_fails(tools, region):
    p = tools.mkfs("--size", "64M", "-U", "0123-nope", region)
    one_error_line(p, "uuid", "0123-nope")
    assert not region.exists()


@pytest.mark.parametrize("args, words", [
    (["--size", "12x"], ["--size", "12x"]),
    (["--size", "5000"], ["--size", "4096"]),
    (["--size", "99999999999999999999T"], ["--size"]),
    (["--alloc-unit", "3000"], ["--alloc-unit", "power of two"]),
    (["--alloc-unit", "3M"], ["--alloc-unit", "power of two"]),
    (["--alloc-unit", "2G"], ["--alloc-unit"]),
    (["--alloc-unit", "banana"], ["--alloc-unit", "banana"]),
    (["--log-size", "100K"], ["--log-size"]),
    (["--log-size", "1G"], ["too small"]),
    (["--log-size", "1048577"], ["--log-size"]),
    (["--size", "1M"], ["too small"]),
    (["-L", "x" * 64], ["label"]),
    (["--max-hosts", "0"], ["--max-hosts"]),
    (["--max-hosts", "5000"], ["--max-hosts"]),
    (["--max-hosts", "many"], ["--max-hosts", "many"]),
    (["--lease-ms", "10"], ["--lease-ms"]),
    (["--lease-ms", "-5"], ["--lease-ms"]),
    (["-U", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"], ["uuid"]),
    (["--size", "64M", "SPEC,length=32M"], ["length"]),
    (["SPEC,offset=1000"], ["offset"]),
    (["SPEC,offset=128M"], ["offset"]),
    (["SPEC", "extra"], ["extra"]),
    ([], ["missing region"]),
])
def test_bad_input_changes_nothing(tools, region, args, words):
    make_file(region, 64 * MiB, pattern(256 * 1024))
    before = file_hash(region)
    argv = [str(region) + a[4:] if a.startswith("SPEC") else a for a in args]
    if not any(a.startswith("SPEC") for a in args) and args != []:
        argv.append(region)
    p = tools.mkfs(*argv)
    one_error_line(p, *words)
    assert file_hash(region) == before
    assert os.path.getsize(region) == 64 * MiB


@pytest.mark.parametrize("args", [
    ["--size", "64M", "--alloc-unit", "3000"],
    ["--size", "1M"],
    ["--size", "64M", "--log-size", "1G"],
    ["--size", "64M", "-L", "y" * 100],
])
def test_bad_input_creates_no_file(tools, region, args):
    p = tools.mkfs(*args, region)
    one_error_line(p)
    assert not region.exists()


def test_unknown_option_is_a_usage_error(tools, region):
    p = tools.mkfs("--frobnicate", region)
    assert p.returncode == 2
    assert "frobnicate" in p.err and "--help" in p.err
    assert p.err.startswith("mkfs.shmfs: ")
    assert not region.exists()


def test_help_and_version(tools):
    p = tools.mkfs("--help")
    assert p.returncode == 0 and "Usage: mkfs.shmfs" in p.out and "--dry-run" in p.out
    p = tools.mkfs("-V")
    assert p.returncode == 0 and "mkfs.shmfs" in p.out


def test_refuses_existing_shmfs_then_force_gives_new_uuid(tools, formatted):
    before = file_hash(formatted)
    p = tools.mkfs("--size", "64M", formatted)
    one_error_line(p, "contains a shmfs filesystem", UUID, '"test"', "-f")
    assert p.returncode == 1
    assert file_hash(formatted) == before

    p = tools.mkfs("-f", formatted)
    assert p.returncode == 0, p.err
    d = tools.dump_json(formatted)
    assert d.returncode == 0
    assert d.doc["superblock"]["uuid"] != UUID
    assert d.doc["superblock"]["label"] == ""


def test_refuses_shmfs_with_damaged_primary(tools, formatted):
    r = Region(formatted)
    raw = bytearray(r.read(0, 512))
    raw[60] ^= 0x10                       # a bit of the label: checksum fails
    r.write(0, raw)
    before = file_hash(formatted)
    p = tools.mkfs(formatted)
    one_error_line(p, "shmfs", "-f")
    assert file_hash(formatted) == before


def test_refuses_shmfs_with_both_superblocks_damaged(tools, formatted):
    r = Region(formatted)
    for off in (0, BACKUP_OFF):
        raw = bytearray(r.read(off, 512))
        raw[130] ^= 0xFF
        r.write(off, raw)
    before = file_hash(formatted)
    p = tools.mkfs(formatted)
    one_error_line(p, "shmfs", "-f")
    assert file_hash(formatted) == before
    assert tools.mkfs("-f", "-q", formatted).returncode == 0


def test_refuses_newer_format_version(tools, formatted):
    Region(formatted).patch_super(version=2)
    before = file_hash(formatted)
    p = tools.mkfs(formatted)
    one_error_line(p, "shmfs", "-f")
    assert file_hash(formatted) == before
    d = tools.dump(formatted)
    assert d.returncode == 1
    assert "newer" in d.out + d.err


def mbr():
    s = bytearray(512)
    s[446:462] = bytes([0x80, 1, 1, 0, 0x83, 0xFE, 0xFF, 0xFF]) + struct.pack("<II", 2048, 204800)
    s[510:512] = b"\x55\xaa"
    return 0, bytes(s)


SIGNATURES = {
    "ext4": [(1080, b"\x53\xef"), (1024 + 0x60, struct.pack("<I", 0x2C2))],
    "ext3": [(1080, b"\x53\xef"), (1024 + 0x5C, struct.pack("<I", 0x4))],
    "ext2": [(1080, b"\x53\xef")],
    "XFS": [(0, b"XFSB")],
    "btrfs": [(65600, b"_BHRfS_M")],
    "swap": [(4086, b"SWAPSPACE2")],
    "LUKS": [(0, b"LUKS\xba\xbe")],
    "GPT": [(512, b"EFI PART")],
    "ISO 9660": [(32769, b"CD001")],
    "squashfs": [(0, b"hsqs")],
    "famfs": [(0, struct.pack("<Q", 0x87B282FF))],
    "partition table": [mbr()],
    "f2fs": [(1024, b"\x10\x20\xf5\xf2")],
    "LVM": [(512, b"LABELONE")],
    "FAT": [(54, b"FAT16   "), (510, b"\x55\xaa")],
    "NTFS": [(3, b"NTFS    "), (510, b"\x55\xaa")],
}


@pytest.mark.parametrize("name", list(SIGNATURES))
def test_refuses_foreign_signature(tools, region, name):
    make_file(region, 64 * MiB)
    r_bytes = bytearray(70000)
    for off, data in SIGNATURES[name]:
        r_bytes[off:off + len(data)] = data
    with open(region, "r+b") as f:
        f.write(r_bytes)
    before = file_hash(region)
    p = tools.mkfs(region)
    one_error_line(p, f"contains", name, "use -f")
    assert p.returncode == 1
    assert file_hash(region) == before

    p = tools.mkfs("-f", region)
    assert p.returncode == 0, p.err
    assert "overwriting" in p.out
    assert tools.dump(region).returncode == 0


def test_signature_outside_region_is_ignored(tools, region):
    # A btrfs magic at file offset 65600 lies before a region that starts at
    # 2 MiB: it belongs to something else and does not count.
    make_file(region, 66 * MiB)
    with open(region, "r+b") as f:
        f.seek(65600)
        f.write(b"_BHRfS_M")
    p = tools.mkfs(f"{region},offset=2M")
    assert p.returncode == 0, p.err


def test_dry_run_writes_nothing(tools, region):
    make_file(region, 64 * MiB, pattern(64 * 1024, seed=7))
    before = file_hash(region)
    p = tools.mkfs("-n", "-L", "dry", region)
    assert p.returncode == 0, p.err
    assert "Dry run" in p.out and "nothing written" in p.out
    assert "data area:" in p.out and '"dry"' in p.out
    assert file_hash(region) == before

    other = region.with_name(region.name + "-new")
    try:
        p = tools.mkfs("--dry-run", "--size", "1G", other)
        assert p.returncode == 0, p.err
        assert not other.exists()
    finally:
        if other.exists():
            other.unlink()


def test_dry_run_still_refuses_existing_fs(tools, formatted):
    p = tools.mkfs("-n", formatted)
    one_error_line(p, "shmfs", "-f")


def test_quiet_prints_nothing(tools, region):
    p = tools.mkfs("-q", "--size", "8M", region)
    assert p.returncode == 0 and p.out == "" and p.err == ""


def test_sparse_1t_formats_quickly_with_tiny_allocation(tools, region):
    t0 = time.monotonic()
    p = tools.mkfs("--size", "1T", "-q", region)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.err
    print(f"mkfs --size 1T took {elapsed * 1000:.1f} ms")
    st = os.stat(region)
    assert st.st_size == 1 << 40
    sb = Region(region).sb
    assert sb["region_size"] == 1 << 40
    allocated = st.st_blocks * 512
    print(f"allocated {allocated} bytes; metadata area {sb['data_off']} bytes")
    assert allocated < sb["data_off"]
    assert allocated < 1 * MiB

    t0 = time.monotonic()
    d = tools.dump(region)
    print(f"dump of the 1 TiB region took {(time.monotonic() - t0) * 1000:.1f} ms")
    assert d.returncode == 0, d.out + d.err
    assert os.stat(region).st_blocks * 512 < 1 * MiB  # dump allocated nothing either


def test_grows_existing_file_and_respects_smaller_size(tools, region):
    make_file(region, 16 * MiB)
    p = tools.mkfs("--size", "64M", "-q", region)
    assert p.returncode == 0, p.err
    assert os.path.getsize(region) == 64 * MiB

    p = tools.mkfs("-f", "--size", "32M", "-q", region)  # the fs may be smaller than the file
    assert p.returncode == 0, p.err
    assert os.path.getsize(region) == 64 * MiB
    assert Region(region).sb["region_size"] == 32 * MiB


def test_empty_file_needs_size(tools, region):
    make_file(region, 0)
    p = tools.mkfs(region)
    one_error_line(p, "empty")
    assert os.path.getsize(region) == 0
    assert tools.mkfs("-q", "--size", "8M", region).returncode == 0
    assert os.path.getsize(region) == 8 * MiB


def test_region_offset(tools, region):
    p = tools.mkfs("--size", "64M", "-L", "at2m", f"{region},offset=2M")
    assert p.returncode == 0, p.err
    assert os.path.getsize(region) == 66 * MiB

    d = tools.dump_json(f"{region},offset=2M")
    assert d.returncode == 0, d.out
    assert d.doc["superblock"]["label"] == "at2m"
    assert d.doc["region"]["offset"] == 2 * MiB
    assert d.doc["records"][0]["type"] == "create"

    d = tools.dump(region)
    assert d.returncode == 1
    assert "no shmfs superblock" in d.out + d.err

    # The offset region is a filesystem too: mkfs refuses it without -f.
    one_error_line(tools.mkfs(f"{region},offset=2M"), "shmfs", "-f")


def test_refuses_window_inside_a_larger_filesystem(tools, formatted):
    """A region spec with an offset inside an existing shmfs overwrites it."""
    before = file_hash(formatted)
    p = tools.mkfs(f"{formatted},offset=4M,length=16M")
    one_error_line(p, "shmfs filesystem that starts at offset 0", UUID, "-f")
    assert p.returncode == 1
    assert file_hash(formatted) == before
    assert tools.mkfs("-f", f"{formatted},offset=4M,length=16M").returncode == 0


def test_alloc_unit_2m(tools, region):
    make_file(region, 64 * MiB)
    p = tools.mkfs("--alloc-unit", "2M", region)
    assert p.returncode == 0, p.err
    sb = Region(region).sb
    assert sb["alloc_unit"] == 2 * MiB
    assert sb["data_off"] % (2 * MiB) == 0
    assert sb["data_size"] % (2 * MiB) == 0 and sb["data_size"] > 0
    assert sb["data_off"] + sb["data_size"] <= 64 * MiB
    assert "2 MiB" in p.out


def test_never_writes_the_data_area(tools, region):
    make_file(region, 16 * MiB)
    marker = b"DATA-AREA-MARKER" * 256
    with open(region, "r+b") as f:
        f.seek(15 * MiB)
        f.write(marker)
    assert tools.mkfs("-q", region).returncode == 0
    sb = Region(region).sb
    assert sb["data_off"] <= 15 * MiB
    with open(region, "rb") as f:
        f.seek(15 * MiB)
        assert f.read(len(marker)) == marker
