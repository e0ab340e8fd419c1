# SPDX-License-Identifier: MIT
"""Names: create, mkdir, rmdir, unlink, rename (all flavours), symlinks,
hard links, special files, readdir.  Each test runs on one mount and across
two mounts of one region (change through A, observe through B)."""
import ctypes
import errno
import os
import stat
import threading

import pytest

from conftest import exists, read_bytes, see, wait_until, write_bytes

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def renameat2(old, new, flags):
    libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                               ctypes.c_uint]
    if libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(old))


def expect_errno(code, fn, *args, **kw):
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    assert ei.value.errno == code, f"{fn.__name__}{args}: {ei.value!r}, wanted {errno.errorcode[code]}"


def test_create_lookup_getattr(pair):
    a, b = pair
    write_bytes(a / "f", b"hello")
    see(pair, "create", lambda: exists(b / "f"))
    see(pair, "size", lambda: os.stat(b / "f").st_size == 5)
    st = os.stat(b / "f")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 5
    assert st.st_nlink == 1
    assert st.st_ino == os.stat(a / "f").st_ino
    assert read_bytes(b / "f") == b"hello"
    # O_EXCL through B sees the file A made
    expect_errno(errno.EEXIST, os.open, b / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    expect_errno(errno.ENOENT, os.stat, b / "nope")


def test_mkdir_and_dir_link_counts(pair):
    a, b = pair
    os.mkdir(a / "d")
    see(pair, "mkdir", lambda: exists(b / "d"))
    assert stat.S_ISDIR(os.stat(b / "d").st_mode)
    assert os.stat(b / "d").st_nlink == 2
    see(pair, "root link count", lambda: os.stat(b.path).st_nlink == 3)
    root_links = 3
    for i in range(3):
        os.mkdir(a / "d" / f"sub{i}")
    write_bytes(a / "d" / "file", b"x")  # files don't count
    see(pair, "subdir link count", lambda: os.stat(b / "d").st_nlink == 5)
    assert os.stat(b.path).st_nlink == root_links
    os.rmdir(a / "d" / "sub0")
    see(pair, "rmdir link count", lambda: os.stat(b / "d").st_nlink == 4)
    # moving a subdirectory moves one link between the parents
    os.mkdir(a / "e")
    os.rename(a / "d" / "sub1", a / "e" / "sub1")
    see(pair, "rename dir link counts",
        lambda: (os.stat(b / "d").st_nlink, os.stat(b / "e").st_nlink) == (3, 3))
    expect_errno(errno.EEXIST, os.mkdir, b / "d")


def test_rmdir_enotempty_then_rmdir(pair):
    a, b = pair
    os.makedirs(a / "d" / "inner")
    see(pair, "mkdir -p", lambda: exists(b / "d" / "inner"))
    expect_errno(errno.ENOTEMPTY, os.rmdir, b / "d")
    os.rmdir(a / "d" / "inner")
    see(pair, "rmdir inner", lambda: not exists(b / "d" / "inner"))
    write_bytes(a / "d" / "f", b"")
    see(pair, "file in dir", lambda: exists(b / "d" / "f"))
    expect_errno(errno.ENOTEMPTY, os.rmdir, b / "d")
    os.unlink(a / "d" / "f")
    os.rmdir(a / "d")
    see(pair, "rmdir", lambda: not exists(b / "d"))
    assert "d" not in os.listdir(b.path)
    expect_errno(errno.ENOENT, os.rmdir, b / "d")
    write_bytes(a / "f", b"")
    see(pair, "file", lambda: exists(b / "f"))
    expect_errno(errno.ENOTDIR, os.rmdir, b / "f")


def test_unlink(pair):
    a, b = pair
    write_bytes(a / "f", b"data")
    see(pair, "create", lambda: exists(b / "f"))
    os.unlink(a / "f")
    see(pair, "unlink", lambda: not exists(b / "f"))
    assert os.listdir(b.path) == []
    expect_errno(errno.ENOENT, os.unlink, b / "f")
    os.mkdir(a / "d")
    see(pair, "mkdir", lambda: exists(b / "d"))
    expect_errno(errno.EISDIR, os.unlink, b / "d")


def test_rename_plain(pair):
    a, b = pair
    write_bytes(a / "old", b"content")
    see(pair, "create", lambda: exists(b / "old"))
    ino = os.stat(b / "old").st_ino
    os.rename(a / "old", a / "new")
    see(pair, "rename", lambda: exists(b / "new") and not exists(b / "old"))
    assert os.stat(b / "new").st_ino == ino
    assert read_bytes(b / "new") == b"content"
    assert sorted(os.listdir(b.path)) == ["new"]


def test_rename_over_existing_file(pair):
    a, b = pair
    write_bytes(a / "src", b"new bytes")
    write_bytes(a / "dst", b"old bytes, longer")
    see(pair, "create", lambda: exists(b / "src") and exists(b / "dst"))
    src_ino = os.stat(b / "src").st_ino
    os.rename(a / "src", a / "dst")
    see(pair, "rename over", lambda: not exists(b / "src") and os.stat(b / "dst").st_ino == src_ino)
    assert read_bytes(b / "dst") == b"new bytes"
    assert os.stat(b / "dst").st_nlink == 1
    assert os.listdir(b.path) == ["dst"]


def test_rename_across_directories(pair):
    a, b = pair
    os.mkdir(a / "d1")
    os.mkdir(a / "d2")
    write_bytes(a / "d1" / "f", b"moved")
    os.mkdir(a / "d1" / "sub")
    write_bytes(a / "d1" / "sub" / "g", b"deep")
    see(pair, "setup", lambda: exists(b / "d1" / "sub" / "g") and exists(b / "d2"))
    os.rename(a / "d1" / "f", a / "d2" / "f2")
    os.rename(a / "d1" / "sub", a / "d2" / "sub")
    see(pair, "rename across dirs",
        lambda: exists(b / "d2" / "f2") and exists(b / "d2" / "sub" / "g")
        and not exists(b / "d1" / "f") and not exists(b / "d1" / "sub"))
    assert read_bytes(b / "d2" / "f2") == b"moved"
    assert read_bytes(b / "d2" / "sub" / "g") == b"deep"
    assert os.listdir(b / "d1") == []
    # ".." of the moved directory is its new parent
    assert os.stat(b / "d2" / "sub" / "..").st_ino == os.stat(b / "d2").st_ino
    os.rmdir(b / "d1")


def test_rename_directory_over_directory(pair):
    a, b = pair
    os.makedirs(a / "src" / "x")
    os.mkdir(a / "empty")
    os.makedirs(a / "full" / "y")
    see(pair, "setup", lambda: exists(b / "full" / "y") and exists(b / "empty"))
    expect_errno(errno.ENOTEMPTY, os.rename, b / "src", b / "full")
    os.rename(a / "src", a / "empty")
    see(pair, "rename dir over empty dir", lambda: exists(b / "empty" / "x") and not exists(b / "src"))
    write_bytes(a / "file", b"")
    expect_errno(errno.ENOTDIR, os.rename, a / "empty", a / "file")
    expect_errno(errno.EISDIR, os.rename, a / "file", a / "full")


def test_rename_noreplace(pair):
    a, b = pair
    write_bytes(a / "x", b"x")
    write_bytes(a / "y", b"y")
    see(pair, "create", lambda: exists(b / "x") and exists(b / "y"))
    expect_errno(errno.EEXIST, renameat2, b / "x", b / "y", RENAME_NOREPLACE)
    assert read_bytes(b / "y") == b"y" and read_bytes(b / "x") == b"x"
    renameat2(b / "x", b / "z", RENAME_NOREPLACE)
    see(pair, "noreplace rename", lambda: exists(a / "z") and not exists(a / "x"))
    assert read_bytes(a / "z") == b"x"


def test_rename_exchange(pair):
    a, b = pair
    write_bytes(a / "x", b"file x")
    os.mkdir(a / "d")
    write_bytes(a / "d" / "inside", b"in d")
    see(pair, "setup", lambda: exists(b / "d" / "inside") and exists(b / "x"))
    ix, id_ = os.stat(b / "x").st_ino, os.stat(b / "d").st_ino
    renameat2(a / "x", a / "d", RENAME_EXCHANGE)
    see(pair, "exchange",
        lambda: os.stat(b / "x").st_ino == id_ and os.stat(b / "d").st_ino == ix)
    assert stat.S_ISDIR(os.stat(b / "x").st_mode)
    assert read_bytes(b / "d") == b"file x"
    assert read_bytes(b / "x" / "inside") == b"in d"
    expect_errno(errno.ENOENT, renameat2, b / "x", b / "missing", RENAME_EXCHANGE)
    expect_errno(errno.EINVAL, renameat2, b / "x", b / "d", RENAME_EXCHANGE | RENAME_NOREPLACE)


def test_rename_onto_own_hard_link_is_noop(pair):
    a, b = pair
    write_bytes(a / "f", b"1")
    os.link(a / "f", a / "g")
    os.rename(a / "f", a / "g")  # POSIX: nothing happens
    see(pair, "links", lambda: exists(b / "f") and exists(b / "g"))
    assert os.stat(b / "g").st_nlink == 2


def test_symlink_readlink(pair):
    a, b = pair
    os.symlink("target/of/the link", a / "l")
    long_target = "x" * 1000 + "/end"
    os.symlink(long_target, a / "long")
    write_bytes(a / "real", b"through the link")
    os.symlink("real", a / "rel")
    see(pair, "symlink", lambda: exists(b / "l") and exists(b / "rel") and exists(b / "long"))
    st = os.lstat(b / "l")
    assert stat.S_ISLNK(st.st_mode)
    assert st.st_size == len("target/of/the link")
    assert os.readlink(b / "l") == "target/of/the link"
    assert os.readlink(b / "long") == long_target
    assert read_bytes(b / "rel") == b"through the link"
    expect_errno(errno.ENOENT, os.stat, b / "l")  # dangling
    expect_errno(errno.EINVAL, os.readlink, b / "real")
    expect_errno(errno.EEXIST, os.symlink, "t", b / "l")


def test_hard_links(pair):
    a, b = pair
    write_bytes(a / "f", b"shared")
    os.mkdir(a / "d")
    os.link(a / "f", a / "d" / "g")
    os.link(a / "f", a / "h")
    see(pair, "link", lambda: exists(b / "d" / "g") and exists(b / "h"))
    for p in (b / "f", b / "d" / "g", b / "h"):
        assert os.stat(p).st_nlink == 3, p
    assert os.stat(b / "f").st_ino == os.stat(b / "d" / "g").st_ino
    # a write through one name shows through the others
    write_bytes(a / "h", b"changed via h")
    assert read_bytes(b / "d" / "g") == b"changed via h"
    os.unlink(a / "f")
    see(pair, "unlink one link", lambda: os.stat(b / "h").st_nlink == 2)
    assert read_bytes(b / "d" / "g") == b"changed via h"
    expect_errno(errno.EEXIST, os.link, b / "h", b / "d" / "g")
    expect_errno(errno.EPERM, os.link, b / "d", b / "dlink")  # no hard links to directories
    os.unlink(a / "h")
    see(pair, "last link", lambda: os.stat(b / "d" / "g").st_nlink == 1)


@pytest.mark.parametrize("kind", ["fifo", "socket", "chr", "blk"])
def test_mknod_special(pair, kind):
    a, b = pair
    p = a / kind
    if kind == "fifo":
        os.mkfifo(p, 0o640)
        fmt, rdev = stat.S_IFIFO, 0
    elif kind == "socket":
        os.mknod(p, 0o640 | stat.S_IFSOCK)
        fmt, rdev = stat.S_IFSOCK, 0
    elif kind == "chr":
        rdev = os.makedev(1, 3)
        os.mknod(p, 0o640 | stat.S_IFCHR, rdev)
        fmt = stat.S_IFCHR
    else:
        rdev = os.makedev(259, 70000)
        os.mknod(p, 0o640 | stat.S_IFBLK, rdev)
        fmt = stat.S_IFBLK
    see(pair, "mknod", lambda: exists(b / kind))
    st = os.lstat(b / kind)
    assert stat.S_IFMT(st.st_mode) == fmt
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_rdev == rdev
    assert st.st_size == 0
    entry = [e for e in os.scandir(b.path) if e.name == kind][0]
    assert stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode) == fmt


def test_fifo_works_within_one_mount(mnt):
    os.mkfifo(mnt / "fifo")
    got = []
    t = threading.Thread(target=lambda: got.append(read_bytes(mnt / "fifo")))
    t.start()
    write_bytes(mnt / "fifo", b"through the pipe")
    t.join(10)
    assert got == [b"through the pipe"]


def test_readdir_many_entries_with_types(pair):
    a, b = pair
    n = 3000
    os.mkdir(a / "big")
    kinds = {}
    for i in range(n):
        name = f"entry-{i:05d}" + ("x" * (i % 40))
        r = i % 3
        if r == 0:
            write_bytes(a / "big" / name, b"")
        elif r == 1:
            os.mkdir(a / "big" / name)
        else:
            os.symlink("t", a / "big" / name)
        kinds[name] = r
    see(pair, "3000 entries", lambda: len(os.listdir(b / "big")) == n, timeout=5)
    names = os.listdir(b / "big")
    assert len(names) == len(set(names)) == n
    assert set(names) == set(kinds)
    with os.scandir(b / "big") as it:
        for e in it:
            r = kinds[e.name]
            assert (e.is_file(follow_symlinks=False), e.is_dir(follow_symlinks=False),
                    e.is_symlink()) == (r == 0, r == 1, r == 2), e.name
    assert os.stat(b / "big").st_nlink == 2 + n // 3
    # remove every other entry; the listing follows
    for i, name in enumerate(sorted(kinds)):
        if i % 2:
            (os.rmdir if kinds[name] == 1 else os.unlink)(a / "big" / name)
    left = {nm for i, nm in enumerate(sorted(kinds)) if i % 2 == 0}
    see(pair, "removals", lambda: set(os.listdir(b / "big")) == left, timeout=5)


def test_readdir_while_entries_change(mounts):
    """Listing a directory while another mount adds and removes entries:
    no crash, no error, no duplicate names, and stable entries always seen."""
    a, b = mounts(2)
    os.mkdir(a / "d")
    stable = {f"stable-{i}" for i in range(200)}
    for n in stable:
        write_bytes(a / "d" / n, b"")
    stop = threading.Event()
    errors = []

    def churn(m, tag):
        i = 0
        try:
            while not stop.is_set():
                p = m / "d" / f"{tag}-{i % 300}"
                if i // 300 % 2 == 0:
                    write_bytes(p, b"")
                else:
                    os.unlink(p)
                i += 1
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(a, "a")),
               threading.Thread(target=churn, args=(b, "b"))]
    for t in threads:
        t.start()
    try:
        for k in range(100):
            for m in (a, b):
                names = os.listdir(m / "d")
                assert len(names) == len(set(names)), "duplicate names in one listing"
                assert stable <= set(names), f"stable entries missing: {sorted(stable - set(names))[:5]}"
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors


def test_names_and_errors(pair):
    a, b = pair
    expect_errno(errno.ENAMETOOLONG, write_bytes, a / ("n" * 256), b"")
    expect_errno(errno.ENAMETOOLONG, os.mkdir, a / ("n" * 256))
    expect_errno(errno.ENAMETOOLONG, os.stat, b / ("n" * 256))
    write_bytes(a / ("n" * 255), b"max")
    see(pair, "255-byte name", lambda: exists(b / ("n" * 255)))
    write_bytes(a / "file", b"")
    see(pair, "file", lambda: exists(b / "file"))
    expect_errno(errno.ENOTDIR, os.stat, b / "file" / "x")
    expect_errno(errno.ENOTDIR, write_bytes, b / "file" / "x", b"")
    expect_errno(errno.ENOTDIR, os.mkdir, b / "file" / "x")
    expect_errno(errno.ENOTDIR, os.listdir, b / "file")
    os.mkdir(a / "dir")
    see(pair, "dir", lambda: exists(b / "dir"))
    expect_errno(errno.EISDIR, open, b / "dir", "wb")
    expect_errno(errno.EISDIR, open, b / "dir", "r+b")
    expect_errno(errno.ENOENT, open, b / "missing" / "x", "wb")
    expect_errno(errno.ENOENT, os.rename, b / "missing", b / "x")
    expect_errno(errno.EEXIST, os.mkdir, b / "file")
    # names with odd bytes
    odd = "sp ace\tnl\nuni\u00e9\u4e2d"
    write_bytes(a / odd, b"odd")
    see(pair, "odd name", lambda: odd in os.listdir(b.path))
    assert read_bytes(b / odd) == b"odd"


def test_rename_cycle_across_hosts(mounts):
    """A moves x into y while B (not yet knowing) moves y into x: one of
    them must fail; the tree never gets a cycle or loses a directory."""
    a, b = mounts(2)
    for r in range(20):
        os.makedirs(a / f"x{r}" / f"inx{r}")
        os.makedirs(a / f"y{r}" / f"iny{r}")
        see((a, b), "setup", lambda: exists(b / f"x{r}" / f"inx{r}") and exists(b / f"y{r}" / f"iny{r}"))
        results = {}

        def mv(m, src, dst, key):
            try:
                os.rename(m / src, m / dst)
                results[key] = "ok"
            except OSError as e:
                results[key] = errno.errorcode[e.errno]

        ta = threading.Thread(target=mv, args=(a, f"x{r}", f"y{r}/x{r}", "a"))
        tb = threading.Thread(target=mv, args=(b, f"y{r}", f"x{r}/y{r}", "b"))
        ta.start(), tb.start()
        ta.join(), tb.join()
        assert list(results.values()).count("ok") <= 1, results
        # both directories and their contents stay reachable from the root
        def reachable(m):
            found = set()
            for dirpath, dirnames, _ in os.walk(m.path):
                found.update(dirnames)
            return {f"x{r}", f"y{r}", f"inx{r}", f"iny{r}"} <= found
        for m in (a, b):
            wait_until(lambda: reachable(m), 1)
