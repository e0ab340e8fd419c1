"""Mounting regions of every kind the host can offer: a PCI BAR (the same
code path as an ivshmem BAR, with a stand-in resource file under a fake
sysfs tree) and a file at an offset.  The real devices run in tests/vm."""
import os
import subprocess

from conftest import BIN, wait_until

MiB = 1 << 20


def drop_caches():
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def run_mount(spec, mnt, env):
    subprocess.run([str(BIN / "mkfs.shmfs"), "-q", "-f", spec], check=True, env=env)
    subprocess.run([str(BIN / "shmfs"), spec, str(mnt), "-o", "host=r"], check=True, env=env)


def test_pci_region_reads_through_a_buffer(tmp_path):
    """A BAR's pages cannot be handed to the kernel: data must still read."""
    sysfs = tmp_path / "sys"
    dev = sysfs / "bus/pci/devices/0000:00:04.0"
    dev.mkdir(parents=True)
    with open(dev / "resource2", "wb") as f:
        f.truncate(64 * MiB)
    env = dict(os.environ, SHMFS_SYSFS_ROOT=str(sysfs))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run_mount("pci:0000:00:04.0", mnt, env)
    try:
        data = os.urandom(3 * MiB + 123)
        with open(mnt / "f", "wb") as f:
            f.write(data)
        drop_caches()
        with open(mnt / "f", "rb") as f:
            assert f.read() == data
        with open(mnt / "sparse", "wb") as f:
            f.truncate(2 * MiB)
            f.seek(MiB)
            f.write(b"x")
        drop_caches()
        with open(mnt / "sparse", "rb") as f:
            got = f.read()
        assert got == bytes(MiB) + b"x" + bytes(MiB - 1)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)])


def test_file_region_at_an_offset(tmp_path):
    img = f"/dev/shm/shmfs-off-{os.getpid()}.img"
    with open(img, "wb") as f:
        f.truncate(70 * MiB)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        run_mount(f"{img},offset=2M,length=64M", mnt, os.environ)
        try:
            (mnt / "hello").write_bytes(b"at 2 MiB")
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)])
        wait_until(lambda: not os.path.ismount(mnt), 5)
        with open(img, "rb") as f:
            assert f.read(8) == bytes(8), "nothing before the offset was written"
            f.seek(2 * MiB)
            assert f.read(8) == b"SHMFSSB1", "the superblock is 2 MiB into the file"
        subprocess.run(
            [str(BIN / "shmfs"), f"{img},offset=2M,length=64M", str(mnt), "-o", "host=r2"],
            check=True)
        try:
            assert (mnt / "hello").read_bytes() == b"at 2 MiB"
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)])
    finally:
        os.unlink(img)
