# SPDX-License-Identifier: MIT
"""Allocation for mapping: fallocate (mode 0 and KEEP_SIZE) gives a file
aligned extents, few and large, so that it can be created, sized and
mapped without being written."""
import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import BIN, MiB, extents, mc, region_info, run

FALLOC_FL_KEEP_SIZE = 1
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def fallocate(path, off, length, mode=0):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if libc.fallocate(fd, mode, off, length) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)


def check_aligned(path):
    info, ext = extents(path)
    align = region_info(path)["align"]
    assert info["unit"] % align == 0
    for foff, roff, ln in ext:
        assert foff % info["unit"] == 0 and roff % info["unit"] == 0 and ln % info["unit"] == 0
    return ext


def test_fallocate_then_map(mnt, driver):
    """Mode 0 sizes the file; KEEP_SIZE then ftruncate does too; either way
    a read-only mapping of the unwritten file works and reads zeros."""
    fallocate(mnt / "a", 0, 32 * MiB)
    assert os.stat(mnt / "a").st_size == 32 * MiB
    ext = check_aligned(mnt / "a")
    assert len(ext) == 1 and ext[0][2] == 32 * MiB     # a fresh region: one run

    fallocate(mnt / "b", 0, 8 * MiB, FALLOC_FL_KEEP_SIZE)
    assert os.stat(mnt / "b").st_size == 0
    os.truncate(mnt / "b", 8 * MiB)
    assert len(check_aligned(mnt / "b")) == 1

    d = driver()
    for name, size in (("a", 32 * MiB), ("b", 8 * MiB)):
        i = 0 if name == "a" else 1
        _, n = d.cmd("map", i, mnt / name, "r")
        assert int(n) == size
        assert d.cmd("read", i, size - 8, 8) == ["00" * 8]


def test_fallocate_keep_size_survives_close(mnt):
    """A KEEP_SIZE allocation past the end of a file that a write stream
    reserved room ahead of stays allocated after the last close.  (The log
    still calls the stream's room "reserved ahead": a remount, a crash or
    fsck would give that part back while the size does not cover it, so the
    test ends by growing the file over it.)"""
    fd = os.open(mnt / "s", os.O_RDWR | os.O_CREAT, 0o644)
    for _ in range(8):
        os.write(fd, b"x" * MiB)
    assert libc.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 24 * MiB) == 0
    os.close(fd)
    _, ext = extents(mnt / "s")
    covered = sorted((e[0], e[0] + e[2]) for e in ext)
    pos = 0
    for a, b in covered:
        assert a == pos, f"hole at {pos} after close: {covered}"
        pos = b
    assert pos == 24 * MiB
    os.truncate(mnt / "s", 24 * MiB)


def test_fallocate_prefers_large_runs(mounts, make_region):
    """A request goes to one free run that holds it whole, if there is
    one, else to the largest runs first."""
    reg = make_region("128M")
    m = mounts(1, reg=reg, one=True)
    pads = []
    while True:      # fill the data area with 1 MiB files, in order
        p = m / f"pad{len(pads):03d}"
        try:
            fallocate(p, 0, MiB)
        except OSError as e:
            assert e.errno == 28
            os.unlink(p)
            break
        pads.append(p)
    assert len(pads) > 60
    roff = {p: extents(p)[1][0][1] for p in pads}
    order = sorted(pads, key=lambda p: roff[p])
    # holes: 16 MiB and 8 MiB runs, and a scatter of 1 MiB ones
    run16, run8 = order[20:36], order[44:52]
    singles = order[2:18:2] + order[54:64:2]
    for p in run16 + run8 + singles:
        os.unlink(p)
    start16 = min(roff[p] for p in run16)

    fallocate(m / "big", 0, 16 * MiB, FALLOC_FL_KEEP_SIZE)
    ext = check_aligned(m / "big")
    assert len(ext) == 1 and ext[0][1] == start16, ext

    fallocate(m / "bigger", 0, 12 * MiB, FALLOC_FL_KEEP_SIZE)
    ext = check_aligned(m / "bigger")
    sizes = sorted((e[2] for e in ext), reverse=True)
    assert sizes == [8 * MiB] + [MiB] * 4, sizes


# ---- a region whose mapping alignment is larger than a page -----------------------

@pytest.fixture
def hugetlbfs_dir():
    """A private hugetlbfs mount (2 MiB pages) with room for a 64 MiB
    region, if the machine has 32 free huge pages (it is not made to)."""
    free = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("HugePages_Free:"):
                free = int(line.split()[1])
    if free < 32:
        pytest.skip("needs 32 free 2 MiB huge pages (echo 32 > /proc/sys/vm/nr_hugepages)")
    d = Path(tempfile.mkdtemp(prefix="shmfs-huge-"))
    r = subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none", str(d)])
    if r.returncode:
        d.rmdir()
        pytest.skip("cannot mount hugetlbfs")
    yield d
    subprocess.run(["umount", "-l", str(d)])
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def hugetlbfs_region(hugetlbfs_dir):
    path = hugetlbfs_dir / "region.img"
    run([BIN / "mkfs.shmfs", "-q", "-f", "--size", "64M", path])
    return mc.Region(path)


def test_huge_page_region(hugetlbfs_region, mounts, driver):
    """2 MiB mapping alignment: extents are 2 MiB units, a mapping at a
    4 KiB offset is made from an aligned 2 MiB one, and stores are shared."""
    a, b = mounts(2, reg=hugetlbfs_region)
    with open(a / "f", "wb") as f:
        f.write(os.urandom(3 * MiB))
    assert region_info(a / "f")["align"] == 2 * MiB
    ext = check_aligned(a / "f")
    assert all(e[1] % (2 * MiB) == 0 for e in ext)
    da, db = driver(), driver()
    da.cmd("map", 0, a / "f", "rw", 4096, 8192)
    db.cmd("map", 0, b / "f", "rw")
    da.cmd("store", 0, 0, 42)
    db.cmd("spin", 0, 4096, 42, 5000)
    da.cmd("unmap", 0)
    assert da.error("mapat", 1, a / "f", "r", 4096, 4096, "fixed", 0x7f0000001000).name == "EINVAL"


def test_unit_smaller_than_alignment(hugetlbfs_dir, shm_dir, mounts, driver):
    """A region formatted with 4 KiB units, then seen where mappings need
    2 MiB (here: copied onto hugetlbfs; in life: a file formatted on the
    host that guests see as devdax): ENOTSUP, and the option that fixes it."""
    import mmap
    src = shm_dir / "small-unit.img"
    run([BIN / "mkfs.shmfs", "-q", "-f", "--size", "64M", src])
    data = src.read_bytes()
    dst = hugetlbfs_dir / "region.img"
    fd = os.open(dst, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, len(data))
    with mmap.mmap(fd, len(data)) as m:
        m[:] = data
    os.close(fd)
    a = mounts(1, reg=mc.Region(dst), one=True)
    with open(a / "f", "wb") as f:
        f.write(b"s" * 8192)
    e = driver().error("map", 0, a / "f", "r")
    assert e.name in ("ENOTSUP", "EOPNOTSUPP") and "--alloc-unit 2M" in e.message, e
