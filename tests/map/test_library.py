# SPDX-License-Identifier: MIT
"""libshmfs on mounted regions: direct mappings shared across mounts
("hosts"), publication to read(), pinning of space against reuse, and
every error the library promises."""
import os
import random
import stat

import pytest

from conftest import (BIN, MiB, DriverError, extents, mc, region_info, run)

wait_until = mc.wait_until


def write_file(p, data):
    with open(p, "wb") as f:
        f.write(data)


def read_file(p):
    with open(p, "rb") as f:
        return f.read()


def rand_bytes(n, seed=1):
    return random.Random(seed).randbytes(n)


def overlaps(xs, ys):
    return any(a[1] < b[1] + b[2] and b[1] < a[1] + a[2] for a in xs for b in ys)


# ---- sharing across hosts ----------------------------------------------------------

def test_stores_visible_across_mounts(mounts, driver):
    """A process on mount A and one on mount B map the same file; each store
    of one is seen by the other by spinning on memory, no system call."""
    a, b = mounts(2)
    write_file(a / "ring", bytes(64 * 1024))
    reg = region_info(a / "ring")
    da, db = driver(), driver()
    da.cmd("map", 0, a / "ring", "rw")
    db.cmd("map", 0, b / "ring", "rw")
    # both are mappings of the region itself, not of a page cache
    assert da.cmd("backing", 0, 0) == [reg["path"]]
    assert db.cmd("backing", 0, 0) == [reg["path"]]
    rounds = 2000
    db.send("pingpong", 0, "follow", rounds, 20000)
    da.send("pingpong", 0, "lead", rounds, 20000)
    lead, follow = da.reply(), db.reply()
    assert int(lead[0]) == rounds and int(follow[0]) == rounds
    print(f"round trip p50 {int(lead[1]) / 1000:.1f} us")
    # and single stores, both ways
    da.cmd("store", 0, 4096, 0xfeedface)
    db.cmd("spin", 0, 4096, 0xfeedface, 5000)
    db.cmd("store", 0, 8192, 7)
    da.cmd("spin", 0, 8192, 7, 5000)


def test_sync_publishes_to_read(pair, driver):
    """Stores through a direct mapping reach read() on every mount after
    shmfs_sync, also where the file's pages were cached; mtime moves, the
    size does not."""
    a, b = pair
    old = rand_bytes(1 * MiB, 1)
    new = rand_bytes(1 * MiB, 2)
    write_file(a / "f", old)
    mc.see(pair, "file", lambda: os.path.exists(b / "f") and read_file(b / "f") == old)
    cached = open(b / "f", "rb")          # B's page cache holds the old bytes
    assert cached.read() == old
    st0 = os.stat(a / "f")

    d = driver()
    d.cmd("map", 0, a / "f", "rw")
    src = a.path.parent / "new.bin"
    write_file(src, new)
    d.cmd("load", 0, 0, src)
    d.cmd("sync", 0)
    assert read_file(a / "f") == new
    mc.see(pair, "synced data", lambda: read_file(b / "f") == new)
    mc.see(pair, "cached reader", lambda: os.pread(cached.fileno(), len(new), 0) == new)
    cached.close()
    mc.see(pair, "mtime", lambda: os.stat(b / "f").st_mtime_ns > st0.st_mtime_ns)
    assert os.stat(b / "f").st_size == len(old)


def test_sync_reaches_mount_mappings(mounts, driver):
    """A plain mmap through the other mount (its page cache) sees the stores
    after shmfs_sync: every host drops the file's cached pages."""
    import mmap
    a, b = mounts(2)
    write_file(a / "f", bytes(64 * 1024))
    fd = os.open(b / "f", os.O_RDONLY)
    m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    os.close(fd)
    assert m[:4] == b"\0\0\0\0"
    d = driver()
    d.cmd("map", 0, a / "f", "rw")
    d.cmd("write", 0, 0, "cafebabe")
    d.cmd("sync", 0)
    wait_until(lambda: m[:4] == bytes.fromhex("cafebabe"), timeout=2)
    m.close()


def test_size_does_not_change(mnt, driver):
    write_file(mnt / "f", b"x" * 5000)
    d = driver()
    _, n = d.cmd("map", 0, mnt / "f", "rw")
    assert int(n) == 5000
    d.cmd("fill", 0, 0, 8192, 0x41)   # the whole last page, past EOF too
    d.cmd("sync", 0)
    assert os.stat(mnt / "f").st_size == 5000
    assert read_file(mnt / "f") == b"A" * 5000


# ---- pinning ----------------------------------------------------------------------

def fill_up(path):
    """Write to path until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    chunk = b"\xee" * MiB
    try:
        while True:
            try:
                if os.write(fd, chunk) < len(chunk):
                    break
            except OSError as e:
                assert e.errno == 28, e  # ENOSPC
                break
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", ["truncate", "unlink"])
def test_removed_elsewhere_stays_mapped(mounts, make_region, driver, how):
    """A file truncated or deleted on another host stays mapped, and its
    space is not handed out, until it is unmapped."""
    reg = make_region("64M")
    a, b = mounts(2, reg=reg)
    size = 8 * MiB
    data = rand_bytes(size, 3)
    write_file(a / "victim", data)
    _, mapped = extents(a / "victim")
    d = driver()
    d.cmd("map", 0, a / "victim", "rw")
    base_fds = int(d.cmd("fds")[0])

    if how == "truncate":
        os.truncate(b / "victim", 0)
        wait_until(lambda: extents(a / "victim")[1] == [], timeout=2)
    else:
        os.unlink(b / "victim")
        wait_until(lambda: not os.path.exists(a / "victim"), timeout=2)

    out = a.path.parent / "out.bin"
    d.cmd("save", 0, 0, size, out)
    assert read_file(out) == data
    d.cmd("fill", 0, 0, 4096, 0x5a)              # still writable

    # Another host fills the filesystem: none of the mapped space is reused.
    fill_up(b / "filler")
    _, filler = extents(b / "filler")
    assert filler and not overlaps(mapped, filler)
    d.cmd("save", 0, 4096, size - 4096, out)
    assert read_file(out) == data[4096:]
    # the layout moved under the mapping: sync says so
    assert d.error("sync", 0).name == "ESTALE"

    d.cmd("unmap", 0)
    assert int(d.cmd("fds")[0]) == base_fds - 1  # the library let go of the file

    # now B can have that space
    def grab():
        fd = os.open(b / "more", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.posix_fallocate(fd, 0, size)
            return True
        except OSError as e:
            assert e.errno == 28, e
            return False
        finally:
            os.close(fd)
    wait_until(grab, timeout=15, interval=0.05)
    _, more = extents(b / "more")
    assert overlaps(mapped, more)


# ---- errors ------------------------------------------------------------------------

def test_not_on_shmfs(mnt, driver, tmp_path):
    write_file(tmp_path / "plain", b"x" * 4096)
    d = driver()
    e = d.error("map", 0, tmp_path / "plain", "r")
    assert e.name in ("ENOTSUP", "EOPNOTSUPP") and "not a file of a shmfs mount" in e.message
    os.mkdir(mnt / "dir")
    e = d.error("map", 0, mnt / "dir", "r")
    assert e.name in ("ENOTSUP", "EOPNOTSUPP", "EISDIR")


def test_region_not_openable(mounts, driver):
    """A user who may read the file but not the region gets EACCES, and a
    message that names the region and says what is needed."""
    a = mounts(1, opts=("allow_other",), one=True)
    write_file(a / "pub", b"y" * 65536)
    os.chmod(a / "pub", 0o666)
    reg = region_info(a / "pub")["path"]
    d = driver(user=65534)
    e = d.error("map", 0, a / "pub", "r")
    assert e.name == "EACCES", e
    assert reg in e.message and "access to the region" in e.message
    e = d.error("map", 0, a / "pub", "rw")
    assert e.name == "EACCES" and "read/write" in e.message


def test_region_replaced(mounts, make_region, driver):
    """The region path now holds another filesystem: ENODEV."""
    reg = make_region("64M")
    a = mounts(1, reg=reg, one=True)
    write_file(a / "f", b"z" * 8192)
    os.rename(reg.path, str(reg.path) + ".old")
    run([BIN / "mkfs.shmfs", "-q", "-f", "--size", "64M", reg.path])
    d = driver()
    e = d.error("map", 0, a / "f", "r")
    assert e.name == "ENODEV" and "reformatted or replaced" in e.message, e
    os.unlink(reg.path)
    e = d.error("map", 0, a / "f", "r")
    assert e.name == "ENODEV" and "does not exist" in e.message, e
    os.rename(str(reg.path) + ".old", reg.path)
    d.cmd("map", 0, a / "f", "r")


def test_layout_change_while_mapping(mnt, driver):
    """The layout generation moves between the library's reads: it retries,
    and gives up with ESTALE if it never holds still."""
    data = rand_bytes(MiB, 4)
    write_file(mnt / "f", data)
    d = driver()
    fds = int(d.cmd("fds")[0])
    d.cmd("flip", mnt / "f", "always")
    e = d.error("map", 0, mnt / "f", "r")
    assert e.name == "ESTALE" and "kept changing" in e.message
    d.cmd("flip", mnt / "f", "once")
    d.cmd("map", 0, mnt / "f", "r")
    d.cmd("flip", mnt / "f", "off")
    out = mnt.path.parent / "out.bin"
    d.cmd("save", 0, 0, MiB, out)
    assert read_file(out) == data
    d.cmd("unmap", 0)
    assert int(d.cmd("fds")[0]) == fds   # nothing leaked by the failures


def test_holes(mnt, driver):
    """A read-only mapping over a hole is EINVAL; a writable one allocates
    the holes first, keeping the size."""
    with open(mnt / "sparse", "wb") as f:
        f.truncate(MiB)
        f.seek(512 * 1024)
        f.write(b"mid")
    d = driver()
    e = d.error("map", 0, mnt / "sparse", "r")
    assert e.name == "EINVAL" and "hole at offset 0" in e.message
    e = d.error("map", 0, mnt / "sparse", "r", 0, 4096)
    assert e.name == "EINVAL"
    _, n = d.cmd("map", 0, mnt / "sparse", "r", 512 * 1024, 4096)   # allocated part
    assert d.cmd("read", 0, 0, 3) == ["6d6964"]
    d.cmd("unmap", 0)
    d.cmd("map", 0, mnt / "sparse", "rw")
    st = os.stat(mnt / "sparse")
    assert st.st_size == MiB and st.st_blocks * 512 >= MiB
    assert d.cmd("read", 0, 512 * 1024 - 2, 5) == ["00006d6964"]
    d.cmd("map", 1, mnt / "sparse", "r")     # no hole left


def test_bad_arguments(mnt, driver):
    write_file(mnt / "f", b"q" * 10000)
    d = driver()
    assert d.error("map", 0, mnt / "f", "r", 100, 4096).name == "EINVAL"      # offset
    assert d.error("map", 0, mnt / "f", "r", 0, 16384).name == "EINVAL"       # past EOF
    assert d.error("map", 0, mnt / "f", "r", 12288, 0).name == "EINVAL"       # offset past EOF
    _, n = d.cmd("map", 0, mnt / "f", "r", 8192, 0)                            # to EOF
    assert int(n) == 10000 - 8192
    write_file(mnt / "empty", b"")
    assert d.error("map", 1, mnt / "empty", "r").name == "EINVAL"


# ---- partial unmap, remap, MAP_FIXED, threads ----------------------------------------

def test_partial_unmap_and_remap(mnt, driver):
    data = rand_bytes(4 * MiB, 5)
    write_file(mnt / "f", data)
    d = driver()
    d.cmd("map", 0, mnt / "f", "rw", 0, MiB)
    assert d.cmd("ismapped", 0, 4096) == ["1", "0", str(MiB)]
    d.cmd("unmap", 0, 65536, 65536)                 # a hole in the middle
    assert d.cmd("ismapped", 0, 65536) == ["0"]
    assert d.cmd("ismapped", 0, 0) == ["1", "0", "65536"]
    assert d.cmd("ismapped", 0, 131072) == ["1", "131072", str(MiB - 131072)]
    assert d.cmd("read", 0, 131072, 4) == [data[131072:131076].hex()]
    assert d.error("unmap", 0, 65536, 4096).name == "EINVAL"   # nothing there now
    d.cmd("unmap", 0, 0, 65536)
    assert d.cmd("ismapped", 0, 0) == ["0"]

    d.cmd("map", 1, mnt / "f", "rw", 0, MiB)
    d.cmd("remap", 1, 3 * MiB, "maymove")           # grow: in place or moved
    assert d.cmd("read", 1, 3 * MiB - 4, 4) == [data[3 * MiB - 4:3 * MiB].hex()]
    assert d.cmd("ismapped", 1, 0) == ["1", "0", str(3 * MiB)]
    d.cmd("remap", 1, MiB)                          # shrink
    assert d.cmd("ismapped", 1, MiB) == ["0"]
    assert d.error("remap", 1, 8 * MiB, "maymove").name == "EINVAL"   # past EOF
    d.cmd("write", 1, 0, "00ff")
    d.cmd("sync", 1)
    assert read_file(mnt / "f")[:2] == b"\x00\xff"
    d.cmd("unmap", 1)


def test_map_fixed(mnt, driver):
    write_file(mnt / "f", rand_bytes(MiB, 6))
    d = driver()
    addr = int(d.cmd("map", 0, mnt / "f", "r", 0, MiB)[0], 16)
    # NOREPLACE over it fails, FIXED over it replaces it
    e = d.error("mapat", 1, mnt / "f", "r", 0, 65536, "noreplace", addr)
    assert e.name == "EEXIST"
    d.cmd("mapat", 1, mnt / "f", "rw", 65536, 65536, "fixed", addr + 65536)
    assert d.cmd("ismapped", 0, 65536) == ["1", "65536", "65536"]
    assert d.cmd("ismapped", 0, 0) == ["1", "0", "65536"]
    assert d.cmd("read", 1, 0, 8) == d.cmd("read", 0, 65536, 8)


def test_threads(mnt, driver):
    write_file(mnt / "f", rand_bytes(256 * 1024, 7))
    d = driver()
    fds = int(d.cmd("fds")[0])
    d.cmd("threads", 4, 150, mnt / "f", timeout=300)
    assert int(d.cmd("fds")[0]) == fds


def test_region_info(mnt):
    """The attributes the library reads, as docs/direct-mapping.md lays
    them out."""
    write_file(mnt / "f", b"a" * 10000)
    info, ext = extents(mnt / "f")
    ri = region_info(mnt / "f")
    assert info["magic"] == 0x50414d53 and info["version"] == 1 and info["size"] == 10000
    assert ri["magic"] == 0x47455253 and ri["uuid"] == info["uuid"] and ri["type"] == 1
    assert os.path.isabs(ri["path"]) and stat.S_ISREG(os.stat(ri["path"]).st_mode)
    assert sum(e[2] for e in ext) >= 10000
    for foff, roff, ln in ext:
        assert foff % info["unit"] == 0 and roff % info["unit"] == 0 and ln % info["unit"] == 0
        assert info["unit"] % ri["align"] == 0 and roff + ln <= ri["size"]
    with pytest.raises(OSError):
        os.removexattr(mnt / "f", "user.shmfs.map")
    assert "user.shmfs.map" not in os.listxattr(mnt / "f")
