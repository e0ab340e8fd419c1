# SPDX-License-Identifier: MIT
"""Direct mapping on the region kinds this host can stand in for: a PCI
resource file (ivshmem's path, under a fake sysfs tree), a file region at
an offset, and a UIO device, which cannot be mapped by extent.  The real
devices (devdax, ivshmem) run in tests/vm."""
import os

from conftest import BIN, MiB, mc, region_info, run


def fresh(spec, env=None):
    run([BIN / "mkfs.shmfs", "-q", "-f", spec], env=env)
    return mc.Region(spec)


def test_pci_resource_region(monkeypatch, tmp_path, mounts, driver):
    sysfs = tmp_path / "sys"
    dev = sysfs / "bus/pci/devices/0000:00:04.0"
    dev.mkdir(parents=True)
    with open(dev / "resource2", "wb") as f:
        f.truncate(64 * MiB)
    monkeypatch.setenv("SHMFS_SYSFS_ROOT", str(sysfs))
    a, b = mounts(2, reg=fresh("pci:0000:00:04.0"))
    with open(a / "f", "wb") as f:
        f.write(b"\x11" * 65536)
    ri = region_info(a / "f")
    assert ri["type"] == 3 and ri["path"] == str(dev / "resource2")
    da, db = driver(), driver()
    da.cmd("map", 0, a / "f", "rw")
    db.cmd("map", 0, b / "f", "r")
    assert da.cmd("backing", 0, 0) == [str(dev / "resource2")]
    da.cmd("store", 0, 8, 99)
    db.cmd("spin", 0, 8, 99, 5000)


def test_region_at_an_offset(mounts, driver, shm_dir):
    img = shm_dir / "offset.img"
    with open(img, "wb") as f:
        f.truncate(70 * MiB)
    a = mounts(1, reg=fresh(f"{img},offset=2M,length=64M"), one=True)
    data = os.urandom(3 * MiB)
    with open(a / "f", "wb") as f:
        f.write(data)
    ri = region_info(a / "f")
    assert ri["offset"] == 2 * MiB and ri["path"] == str(img)
    d = driver()
    d.cmd("map", 0, a / "f", "r")
    out = shm_dir / "out.bin"
    d.cmd("save", 0, 0, len(data), out)
    assert out.read_bytes() == data


def test_uio_region_is_refused(monkeypatch, tmp_path, mounts, driver, shm_dir):
    sysfs = tmp_path / "sys"
    maps = sysfs / "class/uio/uio7/maps/map0"
    maps.mkdir(parents=True)
    (maps / "size").write_text("0x04000000\n")
    (maps / "offset").write_text("0x0\n")
    img = shm_dir / "uio7"
    with open(img, "wb") as f:
        f.truncate(64 * MiB)
    monkeypatch.setenv("SHMFS_SYSFS_ROOT", str(sysfs))
    a = mounts(1, reg=fresh(str(img)), one=True)
    with open(a / "f", "wb") as f:
        f.write(b"u" * 4096)
    assert region_info(a / "f")["type"] == 4
    e = driver().error("map", 0, a / "f", "r")
    assert e.name in ("ENOTSUP", "EOPNOTSUPP") and "UIO" in e.message, e
