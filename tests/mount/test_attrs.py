# SPDX-License-Identifier: MIT
"""Attributes: chmod, chown, utimens, truncate, timestamps, xattrs,
ownership of new files, setgid directories, permission checks, ro mounts."""
import errno
import os
import stat
import time

import pytest

from conftest import as_nobody, exists, read_bytes, see, write_bytes
from test_namespace import expect_errno


def test_chmod(pair):
    a, b = pair
    write_bytes(a / "f", b"")
    os.mkdir(a / "d")
    see(pair, "create", lambda: exists(b / "f") and exists(b / "d"))
    before = os.stat(b / "f")
    time.sleep(0.01)
    os.chmod(a / "f", 0o4751)
    os.chmod(a / "d", 0o1777)
    see(pair, "chmod", lambda: stat.S_IMODE(os.stat(b / "f").st_mode) == 0o4751)
    see(pair, "chmod dir", lambda: stat.S_IMODE(os.stat(b / "d").st_mode) == 0o1777)
    st = os.stat(b / "f")
    assert stat.S_ISREG(st.st_mode) and stat.S_ISDIR(os.stat(b / "d").st_mode)
    assert st.st_ctime_ns > before.st_ctime_ns
    assert st.st_mtime_ns == before.st_mtime_ns


def test_chown(pair):
    a, b = pair
    write_bytes(a / "f", b"")
    see(pair, "create", lambda: exists(b / "f"))
    os.chown(a / "f", 1234, 5678)
    see(pair, "chown", lambda: (os.stat(b / "f").st_uid, os.stat(b / "f").st_gid) == (1234, 5678))
    os.chown(a / "f", -1, 42)
    see(pair, "chgrp", lambda: (os.stat(b / "f").st_uid, os.stat(b / "f").st_gid) == (1234, 42))
    os.symlink("f", a / "l")
    os.lchown(a / "l", 7, 8)
    see(pair, "lchown", lambda: (os.lstat(b / "l").st_uid, os.lstat(b / "l").st_gid) == (7, 8))
    assert os.stat(b / "f").st_uid == 1234


def test_utimens_nanoseconds(pair):
    a, b = pair
    write_bytes(a / "f", b"")
    os.mkdir(a / "d")
    see(pair, "create", lambda: exists(b / "f"))
    at, mt = 1_234_567_890_123_456_789, 1_600_000_000_987_654_321
    os.utime(a / "f", ns=(at, mt))
    os.utime(a / "d", ns=(at + 1, mt + 1))
    see(pair, "utimens", lambda: os.stat(b / "f").st_mtime_ns == mt)
    st = os.stat(b / "f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (at, mt)
    see(pair, "utimens dir", lambda: os.stat(b / "d").st_atime_ns == at + 1)
    assert os.stat(b / "d").st_mtime_ns == mt + 1
    # times before 1970 and far ahead
    os.utime(a / "f", ns=(0, 4_102_444_800_000_000_001))
    see(pair, "utimens future", lambda: os.stat(b / "f").st_mtime_ns == 4_102_444_800_000_000_001)
    # utime(NULL): now, on both
    t0 = time.time_ns()
    os.utime(a / "f")
    see(pair, "utimens now", lambda: t0 - 10_000_000 <= os.stat(b / "f").st_mtime_ns <= time.time_ns())
    st = os.stat(b / "f")
    assert st.st_atime_ns == st.st_mtime_ns


def test_truncate_down_and_up(pair):
    a, b = pair
    data = os.urandom(200_000)
    write_bytes(a / "f", data)
    see(pair, "create", lambda: exists(b / "f"))
    assert read_bytes(b / "f") == data
    for size in (150_000, 65_537, 4096, 1000, 1):
        os.truncate(a / "f", size)
        see(pair, f"truncate {size}", lambda: os.stat(b / "f").st_size == size)
        assert read_bytes(b / "f") == data[:size], size
    os.truncate(a / "f", 300_000)
    see(pair, "truncate up", lambda: os.stat(b / "f").st_size == 300_000)
    got = read_bytes(b / "f")
    assert got[:1] == data[:1]
    assert got[1:] == bytes(299_999), "bytes beyond a shrunk size must read back as zeros"
    os.truncate(a / "f", 0)
    see(pair, "truncate 0", lambda: os.stat(b / "f").st_size == 0)
    assert read_bytes(b / "f") == b""
    assert os.stat(b / "f").st_blocks == 0


def test_truncate_keeps_zeros_after_rewrite(mnt):
    """Shrink, write past the end, then check the gap: the old bytes must
    not reappear anywhere (unit tails, preallocated space)."""
    p = mnt / "f"
    write_bytes(p, b"\xff" * 100_000)
    with open(p, "r+b") as f:
        f.truncate(5000)
        f.seek(50_000)
        f.write(b"end")
    got = read_bytes(p)
    assert len(got) == 50_003
    assert got[:5000] == b"\xff" * 5000
    assert got[5000:50_000] == bytes(45_000)
    assert got[50_000:] == b"end"


@pytest.mark.parametrize("how", ["ftruncate", "truncate-path", "o_trunc"])
def test_truncate_discards_unflushed_writes(pair, how):
    """Bytes written through a handle that is still open (not yet flushed)
    and then cut off by a truncation must read back as zeros when the file
    grows again -- on this mount and on the other."""
    a, b = pair
    fd = os.open(a / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"A" * (1 << 20))
        if how == "ftruncate":
            os.ftruncate(fd, 100)
        elif how == "truncate-path":
            os.truncate(a / "f", 100)
        else:
            os.close(os.open(a / "f", os.O_WRONLY | os.O_TRUNC))
            os.pwrite(fd, b"A" * 100, 0)
        os.ftruncate(fd, 1 << 20)
        got = os.pread(fd, 1 << 20, 0)
        assert got[:100] == b"A" * 100
        assert got[100:] == bytes((1 << 20) - 100), \
            f"{got[100:].count(b'A')} bytes cut off by the truncation came back"
    finally:
        os.close(fd)
    see(pair, "size", lambda: os.stat(b / "f").st_size == 1 << 20)
    got = read_bytes(b / "f")
    assert got[:100] == b"A" * 100 and got[100:] == bytes((1 << 20) - 100)


def test_ftruncate_on_open_file_updates_mtime(pair):
    a, b = pair
    write_bytes(a / "f", b"x" * 10_000)
    see(pair, "create", lambda: os.stat(b / "f").st_size == 10_000)
    m0 = os.stat(b / "f").st_mtime_ns
    time.sleep(0.01)
    fd = os.open(a / "f", os.O_RDWR)
    try:
        os.ftruncate(fd, 10)
    finally:
        os.close(fd)
    see(pair, "ftruncate", lambda: os.stat(b / "f").st_size == 10)
    st = os.stat(b / "f")
    assert st.st_mtime_ns > m0 and st.st_ctime_ns > m0


def test_o_trunc(pair):
    a, b = pair
    write_bytes(a / "f", b"a lot of old content here")
    see(pair, "create", lambda: exists(b / "f"))
    write_bytes(b / "f", b"new")
    see(pair, "O_TRUNC", lambda: os.stat(a / "f").st_size == 3)
    assert read_bytes(a / "f") == b"new"


def test_timestamps_on_write_and_close(pair):
    a, b = pair
    write_bytes(a / "f", b"first")
    see(pair, "create", lambda: os.stat(b / "f").st_size == 5)
    s0 = os.stat(b / "f")
    time.sleep(0.02)
    with open(a / "f", "r+b") as f:
        f.write(b"second")
    see(pair, "mtime after write", lambda: os.stat(b / "f").st_mtime_ns > s0.st_mtime_ns)
    s1 = os.stat(b / "f")
    assert s1.st_ctime_ns > s0.st_ctime_ns
    assert s1.st_mtime_ns <= time.time_ns()
    assert s1.st_size == 6


def test_parent_times_on_create_and_unlink(pair):
    a, b = pair
    os.mkdir(a / "d")
    see(pair, "mkdir", lambda: exists(b / "d"))
    s0 = os.stat(b / "d")
    time.sleep(0.02)
    write_bytes(a / "d" / "f", b"")
    see(pair, "parent mtime on create", lambda: os.stat(b / "d").st_mtime_ns > s0.st_mtime_ns)
    s1 = os.stat(b / "d")
    assert s1.st_ctime_ns > s0.st_ctime_ns
    time.sleep(0.02)
    os.unlink(a / "d" / "f")
    see(pair, "parent mtime on unlink", lambda: os.stat(b / "d").st_mtime_ns > s1.st_mtime_ns)
    s2 = os.stat(b / "d")
    time.sleep(0.02)
    os.mkdir(a / "d" / "sub")
    see(pair, "parent mtime on mkdir", lambda: os.stat(b / "d").st_mtime_ns > s2.st_mtime_ns)


def test_rename_times(pair):
    a, b = pair
    os.mkdir(a / "d1")
    os.mkdir(a / "d2")
    write_bytes(a / "d1" / "f", b"x")
    see(pair, "setup", lambda: exists(b / "d2") and os.stat(b / "d1" / "f").st_size == 1)
    f0, d10, d20 = os.stat(b / "d1" / "f"), os.stat(b / "d1"), os.stat(b / "d2")
    time.sleep(0.02)
    os.rename(a / "d1" / "f", a / "d2" / "g")
    see(pair, "rename", lambda: exists(b / "d2" / "g"))
    see(pair, "rename ctime", lambda: os.stat(b / "d2" / "g").st_ctime_ns > f0.st_ctime_ns)
    f1 = os.stat(b / "d2" / "g")
    assert f1.st_mtime_ns == f0.st_mtime_ns, "rename must not change the moved file's mtime"
    see(pair, "rename parents' mtime",
        lambda: os.stat(b / "d1").st_mtime_ns > d10.st_mtime_ns
        and os.stat(b / "d2").st_mtime_ns > d20.st_mtime_ns)


def test_link_changes_ctime(pair):
    a, b = pair
    write_bytes(a / "f", b"x")
    see(pair, "create", lambda: os.stat(b / "f").st_size == 1)
    c0 = os.stat(b / "f").st_ctime_ns
    time.sleep(0.02)
    os.link(a / "f", a / "g")
    see(pair, "link ctime", lambda: os.stat(b / "f").st_ctime_ns > c0)


# ---- xattrs ----------------------------------------------------------------------

def test_xattrs(pair):
    a, b = pair
    write_bytes(a / "f", b"")
    see(pair, "create", lambda: exists(b / "f"))
    os.setxattr(a / "f", "user.one", b"1")
    os.setxattr(a / "f", "user.two", b"\x00binary\xff" * 100)
    os.setxattr(a / "f", "user.empty", b"")
    see(pair, "setxattr", lambda: "user.empty" in os.listxattr(b / "f"))
    assert sorted(os.listxattr(b / "f")) == ["user.empty", "user.one", "user.two"]
    assert os.getxattr(b / "f", "user.one") == b"1"
    assert os.getxattr(b / "f", "user.two") == b"\x00binary\xff" * 100
    assert os.getxattr(b / "f", "user.empty") == b""
    expect_errno(errno.ENODATA, os.getxattr, b / "f", "user.missing")
    # XATTR_CREATE on an existing name, XATTR_REPLACE on a missing one
    expect_errno(errno.EEXIST, os.setxattr, b / "f", "user.one", b"x", os.XATTR_CREATE)
    expect_errno(errno.ENODATA, os.setxattr, b / "f", "user.nope", b"x", os.XATTR_REPLACE)
    os.setxattr(b / "f", "user.one", b"replaced", os.XATTR_REPLACE)
    os.setxattr(b / "f", "user.three", b"3", os.XATTR_CREATE)
    see((b, a), "xattr create", lambda: os.getxattr(a / "f", "user.three") == b"3")
    assert os.getxattr(a / "f", "user.one") == b"replaced"
    os.removexattr(a / "f", "user.two")
    see(pair, "removexattr", lambda: "user.two" not in os.listxattr(b / "f"))
    expect_errno(errno.ENODATA, os.removexattr, b / "f", "user.two")
    expect_errno(errno.ENODATA, os.getxattr, b / "f", "user.two")
    # on directories too, and ctime moves
    os.mkdir(a / "d")
    c0 = os.stat(a / "d").st_ctime_ns
    time.sleep(0.01)
    os.setxattr(a / "d", "user.dir", b"v")
    see(pair, "dir xattr", lambda: os.getxattr(b / "d", "user.dir") == b"v")
    see(pair, "xattr ctime", lambda: os.stat(b / "d").st_ctime_ns > c0)


def test_xattr_sizes(mnt):
    p = mnt / "f"
    write_bytes(p, b"")
    big = os.urandom(4000)
    os.setxattr(p, "user.big", big)
    assert os.getxattr(p, "user.big") == big
    expect_errno(errno.ERANGE, os.setxattr, p, "user." + "n" * 300, b"x")
    many = [f"user.k{i}" for i in range(50)]
    for k in many:
        os.setxattr(p, k, k.encode())
    assert set(many) <= set(os.listxattr(p))
    for k in many:
        assert os.getxattr(p, k) == k.encode()


# ---- ownership, setgid, permissions ----------------------------------------------

def test_new_files_owned_by_caller(mounts):
    a, b = mounts(2, opts=("allow_other",))
    os.mkdir(a / "pub")
    os.chmod(a / "pub", 0o777)
    see((a, b), "mkdir", lambda: stat.S_IMODE(os.stat(b / "pub").st_mode) == 0o777)
    code = """
import os, sys, stat
d = sys.argv[1]
with open(os.path.join(d, "file"), "w") as f: f.write("x")
os.mkdir(os.path.join(d, "dir"))
os.symlink("t", os.path.join(d, "link"))
os.mkfifo(os.path.join(d, "fifo"))
"""
    p = as_nobody(code, str(b / "pub"))
    assert p.returncode == 0, p.stderr
    for name in ("file", "dir", "link", "fifo"):
        see((b, a), f"nobody's {name}", lambda: exists(a / "pub" / name))
        st = os.lstat(a / "pub" / name)
        assert (st.st_uid, st.st_gid) == (65534, 65534), (name, st.st_uid, st.st_gid)
    # and root's new files are root's
    write_bytes(a / "pub" / "rootfile", b"")
    assert (os.stat(a / "pub" / "rootfile").st_uid, os.stat(a / "pub" / "rootfile").st_gid) == (0, 0)


def test_umask_applies(mnt):
    old = os.umask(0o027)
    try:
        write_bytes(mnt / "f", b"")
        os.mkdir(mnt / "d", 0o777)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(mnt / "f").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(mnt / "d").st_mode) == 0o750


def test_setgid_directory(pair):
    a, b = pair
    os.mkdir(a / "sg")
    os.chown(a / "sg", 0, 4242)
    os.chmod(a / "sg", 0o2775)
    write_bytes(a / "sg" / "f", b"")
    os.mkdir(a / "sg" / "sub")
    os.mknod(a / "sg" / "fifo", 0o600 | stat.S_IFIFO)
    see(pair, "setgid children", lambda: exists(b / "sg" / "sub") and exists(b / "sg" / "fifo"))
    assert os.stat(b / "sg" / "f").st_gid == 4242
    assert os.stat(b / "sg" / "fifo").st_gid == 4242
    sub = os.stat(b / "sg" / "sub")
    assert sub.st_gid == 4242
    assert sub.st_mode & stat.S_ISGID, "a subdirectory of a setgid directory inherits S_ISGID"
    assert not os.stat(b / "sg" / "f").st_mode & stat.S_ISGID
    # and one level further down
    write_bytes(b / "sg" / "sub" / "g", b"")
    see((b, a), "grandchild", lambda: exists(a / "sg" / "sub" / "g"))
    assert os.stat(a / "sg" / "sub" / "g").st_gid == 4242
    # without setgid: the caller's group
    os.mkdir(a / "plain")
    os.chown(a / "plain", 0, 4242)
    write_bytes(a / "plain" / "f", b"")
    assert os.stat(a / "plain" / "f").st_gid == 0


def test_permission_checks(mounts):
    a, b = mounts(2, opts=("allow_other",))
    write_bytes(a / "secret", b"root only")
    os.chmod(a / "secret", 0o600)
    os.mkdir(a / "rootdir", 0o755)
    write_bytes(a / "public", b"everyone")
    os.chmod(a / "public", 0o644)
    see((a, b), "setup", lambda: exists(b / "public") and exists(b / "rootdir")
        and stat.S_IMODE(os.stat(b / "secret").st_mode) == 0o600)
    code = """
import errno, os, sys
m = sys.argv[1]
res = []
def t(fn, *a):
    try:
        fn(*a); res.append("ok")
    except OSError as e:
        res.append(errno.errorcode[e.errno])
t(lambda: open(os.path.join(m, "secret")).read())
t(lambda: open(os.path.join(m, "rootdir", "new"), "w"))
t(lambda: os.mkdir(os.path.join(m, "rootdir", "sub")))
t(lambda: open(os.path.join(m, "public"), "a"))
t(lambda: open(os.path.join(m, "public")).read())
t(lambda: os.chmod(os.path.join(m, "public"), 0o777))
t(lambda: os.unlink(os.path.join(m, "public")))
print(" ".join(res))
"""
    for m in (a, b):
        p = as_nobody(code, str(m))
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == ["EACCES", "EACCES", "EACCES", "EACCES", "ok", "EPERM",
                                    "EACCES"], m
    # nothing was created or changed
    assert not exists(a / "rootdir" / "new") and not exists(a / "rootdir" / "sub")
    assert read_bytes(b / "public") == b"everyone"
    assert stat.S_IMODE(os.stat(a / "public").st_mode) == 0o644


def test_chmod_by_owner_and_sticky_dir(mounts):
    a = mounts(1, opts=("allow_other",), one=True)
    os.mkdir(a / "tmp")
    os.chmod(a / "tmp", 0o1777)
    write_bytes(a / "tmp" / "rootfile", b"")
    os.chmod(a / "tmp" / "rootfile", 0o666)
    code = """
import errno, os, sys
d = sys.argv[1]
res = []
with open(os.path.join(d, "mine"), "w"): pass
os.chmod(os.path.join(d, "mine"), 0o600); res.append(oct(os.stat(os.path.join(d, "mine")).st_mode & 0o777))
try:
    os.unlink(os.path.join(d, "rootfile")); res.append("ok")
except OSError as e:
    res.append(errno.errorcode[e.errno])
try:
    os.chown(os.path.join(d, "mine"), 0, -1); res.append("ok")
except OSError as e:
    res.append(errno.errorcode[e.errno])
print(" ".join(res))
"""
    p = as_nobody(code, str(a / "tmp"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0o600", "EPERM", "EPERM"]
    assert exists(a / "tmp" / "rootfile")


def test_readonly_mount(mounts):
    rw = mounts(1, one=True)
    write_bytes(rw / "f", b"data")
    os.mkdir(rw / "d")
    ro = mounts(1, opts=("ro",), one=True)
    assert read_bytes(ro / "f") == b"data"
    assert sorted(os.listdir(ro.path)) == ["d", "f"]
    for fn, args in [(write_bytes, (ro / "g", b"")), (write_bytes, (ro / "f", b"x", "ab")),
                     (os.mkdir, (ro / "e",)), (os.rmdir, (ro / "d",)), (os.unlink, (ro / "f",)),
                     (os.rename, (ro / "f", ro / "h")), (os.chmod, (ro / "f", 0o600)),
                     (os.truncate, (ro / "f", 0)), (os.symlink, ("x", ro / "l")),
                     (os.link, (ro / "f", ro / "l")), (os.setxattr, (ro / "f", "user.a", b"1")),
                     (os.utime, (ro / "f",))]:
        expect_errno(errno.EROFS, fn, *args)
    # the ro mount still follows the rw one, and leaves no trace of itself
    write_bytes(rw / "later", b"later")
    see((rw, ro), "rw -> ro", lambda: exists(ro / "later"))
    assert read_bytes(ro / "later") == b"later"
    assert read_bytes(rw / "f") == b"data"
