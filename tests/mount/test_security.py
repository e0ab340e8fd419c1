# SPDX-License-Identifier: MIT
"""Security: what one user may do to another's files through a mount, what
a mount lets other users do at all, symlinks stored in the region, names and
targets written by a hostile peer, and the validation of option strings and
region paths.  The trust model these tests check is docs/trust-model.md.

Covered elsewhere (not repeated here): reading a 0600 file, creating in
and unlinking from a root-owned directory, chmod of another user's file
(test_attrs.py::test_permission_checks); chmod of one's own file, unlink in
a sticky directory, chown to root (test_chmod_by_owner_and_sticky_dir);
ownership of new files and setgid directories (test_new_files_owned_by_caller,
test_setgid_directory); read-only mounts (test_readonly_mount).

Other users are uid 65534 (nobody) and 65533, run through setpriv.
"""
import ctypes
import os
import socket
import stat
import struct
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conftest import (BIN, exists, mountinfo, pids_of_mount, read_bytes, run, see, wait_until,
                      write_bytes)
from peer import S_IFLNK, S_IFREG, Canary, Peer, attempt, ed, within

NOBODY, OTHER, OWNER = 65534, 65533, 1000


def as_user(uid, code, *args, gid=None, groups=None):
    """Run python code as uid (gid defaults to uid), with no supplementary
    groups unless given."""
    gid = uid if gid is None else gid
    cred = [f"--reuid={uid}", f"--regid={gid}"]
    cred += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    return run(["setpriv", *cred, "/usr/bin/python3", "-c", textwrap.dedent(code), *args],
               check=False)


# Prints one word per operation: "ok" or the errno name.
TRY = """
import errno, os, sys
res = []
def t(fn, *a, **k):
    try:
        fn(*a, **k)
        res.append("ok")
    except OSError as e:
        res.append(errno.errorcode[e.errno])
"""


def mount_opts(m):
    """(per-mount options, super options) of mount m, from mountinfo."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a, b = line.split(" - ", 1)
            if a.split()[4] == str(m):
                return set(a.split()[5].split(",")), set(b.split()[2].split(","))
    raise AssertionError(f"{m} is not mounted")


# ---- mount options: default_permissions, allow_other ------------------------------

def test_default_mount_options(mounts):
    """default_permissions on, allow_other off, nosuid and nodev, unless
    asked otherwise."""
    plain = mounts(1, one=True)
    per, sup = mount_opts(plain)
    assert "default_permissions" in sup and "allow_other" not in sup, sup
    assert {"nosuid", "nodev"} <= per, per
    other = mounts(1, opts=("allow_other",), one=True)
    assert "allow_other" in mount_opts(other)[1]
    nodef = mounts(1, opts=("nodefault_permissions",), one=True)
    assert "default_permissions" not in mount_opts(nodef)[1]


@pytest.mark.parametrize("opts", [(), ("nodefault_permissions",)],
                         ids=["default", "nodefault_permissions"])
def test_other_users_locked_out_without_allow_other(mounts, opts):
    """Without allow_other nobody but the mounting user gets in, whatever
    the mode bits say -- even without default_permissions."""
    a = mounts(1, opts=opts, one=True)
    os.chmod(a.path, 0o777)
    write_bytes(a / "open", b"everyone may")
    os.chmod(a / "open", 0o666)
    p = as_user(NOBODY, TRY + """
m = sys.argv[1]
t(os.stat, m)
t(os.listdir, m)
t(lambda: open(os.path.join(m, "open")).read())
t(lambda: open(os.path.join(m, "new"), "w"))
t(os.stat, os.path.join(m, "open"))
print(" ".join(res))
""", str(a))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["EACCES"] * 5
    assert not exists(a / "new")


def test_allow_root_admits_root_only(mounts):
    """allow_root: the kernel lets everybody in (it is allow_other to the
    kernel) and libfuse turns away the requests of users other than root
    and the mounter -- what the kernel has cached, such as attributes, is
    still seen (docs/trust-model.md)."""
    a = mounts(1, opts=("allow_root",), one=True)
    os.chmod(a.path, 0o777)
    write_bytes(a / "open", b"everyone may")
    os.chmod(a / "open", 0o666)
    p = as_user(NOBODY, TRY + """
m = sys.argv[1]
t(os.listdir, m)
t(lambda: open(os.path.join(m, "open")).read())
t(lambda: open(os.path.join(m, "new"), "w"))
print(" ".join(res))
""", str(a))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["EACCES"] * 3
    assert not exists(a / "new")


# ---- mode bits -----------------------------------------------------------------------

def test_mode_bits_deny(mounts):
    """Everything another user's mode bits deny is denied, on the mount
    that made the files and on another host's mount."""
    a, b = mounts(2, opts=("allow_other",))
    os.chmod(a.path, 0o755)
    write_bytes(a / "ro644", b"read only")
    os.chmod(a / "ro644", 0o644)
    write_bytes(a / "rw666", b"read write")
    os.chmod(a / "rw666", 0o666)
    write_bytes(a / "secret600", b"secret")
    os.chmod(a / "secret600", 0o600)
    for f in ("ro644", "secret600"):
        os.setxattr(a / f, "user.tag", b"root's")
    os.mkdir(a / "rootdir", 0o755)
    write_bytes(a / "rootdir" / "inner", b"inner")
    os.mkdir(a / "private", 0o700)
    write_bytes(a / "private" / "hidden", b"hidden")
    os.mkdir(a / "pub", 0o777)
    os.chmod(a / "pub", 0o777)
    see((a, b), "setup", lambda: exists(b / "pub") and exists(b / "private" / "hidden"))
    before = {f: (os.stat(a / f), read_bytes(a / f))
              for f in ("ro644", "rw666", "secret600", "rootdir/inner", "private/hidden")}
    code = TRY + """
m = sys.argv[1]
p = lambda *n: os.path.join(m, *n)
t(lambda: open(p("ro644"), "r+b"))
t(os.open, p("ro644"), os.O_WRONLY | os.O_TRUNC)
t(os.truncate, p("ro644"), 0)
t(os.utime, p("ro644"), (1, 1))
t(os.utime, p("ro644"))
t(os.utime, p("rw666"), (1, 1))
t(os.utime, p("rw666"))
t(os.chown, p("ro644"), 65534, 65534)
t(os.chown, p("rw666"), -1, 65534)
t(os.rename, p("rootdir", "inner"), p("rootdir", "moved"))
t(os.rename, p("ro644"), p("pub", "stolen"))
t(os.unlink, p("rootdir", "inner"))
t(os.rmdir, p("rootdir"))
t(os.link, p("ro644"), p("pub", "hardlink"))
t(os.symlink, "x", p("rootdir", "l"))
t(os.setxattr, p("ro644"), "user.x", b"1")
t(os.removexattr, p("ro644"), "user.tag")
t(os.getxattr, p("secret600"), "user.tag")
t(os.setxattr, p("rw666"), "trusted.x", b"1")
t(os.setxattr, p("rw666"), "user.x", b"1")
t(os.stat, p("private", "hidden"))
t(os.listdir, p("private"))
t(os.mknod, p("pub", "dev"), 0o20666, os.makedev(1, 3))
t(os.mkfifo, p("pub", "fifo"))
print(" ".join(res))
"""
    want = ["EACCES", "EACCES", "EACCES", "EPERM", "EACCES", "EPERM", "ok", "EPERM", "EPERM",
            "EACCES", "EACCES", "EACCES", "EACCES", "EPERM", "EACCES", "EACCES", "EACCES",
            "EACCES", "EPERM", "ok", "EACCES", "EACCES", "EPERM", "ok"]
    for m in (b, a):
        p = as_user(NOBODY, code, str(m))
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == want, (m.host, list(zip(p.stdout.split(), want)))
        os.unlink(m / "pub" / "fifo")
    see((a, b), "fifo removed", lambda: os.listdir(b / "pub") == [])
    # nothing was changed but what rw666's mode bits allowed
    for m in (a, b):
        for f, (st, data) in before.items():
            now = os.stat(m / f)
            assert read_bytes(m / f) == data, f
            assert (now.st_mode, now.st_uid, now.st_gid) == (st.st_mode, st.st_uid, st.st_gid), f
            if f != "rw666":
                assert now.st_mtime_ns == st.st_mtime_ns, f
        assert os.getxattr(m / "ro644", "user.tag") == b"root's"
        assert os.getxattr(m / "rw666", "user.x") == b"1"
        assert "trusted.x" not in os.listxattr(m / "rw666")
        assert sorted(os.listdir(m / "pub")) == []
        assert sorted(os.listdir(m / "rootdir")) == ["inner"]


def test_sticky_directory(mounts):
    """In a sticky directory only a file's owner (or the directory's) may
    remove or rename it, whatever the file's mode bits."""
    a, b = mounts(2, opts=("allow_other",))
    os.mkdir(a / "tmp")
    os.chown(a / "tmp", OWNER, OWNER)
    os.chmod(a / "tmp", 0o1777)
    see((a, b), "sticky dir", lambda: os.stat(b / "tmp").st_mode & stat.S_ISVTX)
    for uid, m in ((NOBODY, a), (OTHER, b)):
        p = as_user(uid, """
import os, sys
with open(os.path.join(sys.argv[1], sys.argv[2]), "w") as f: f.write(sys.argv[2])
os.chmod(os.path.join(sys.argv[1], sys.argv[2]), 0o666)
""", str(m / "tmp"), f"u{uid}")
        assert p.returncode == 0, p.stderr
    see((b, a), "files",
        lambda: exists(a / "tmp" / f"u{OTHER}") and exists(b / "tmp" / f"u{NOBODY}"))
    code = TRY + """
d = sys.argv[1]
p = lambda n: os.path.join(d, n)
t(os.unlink, p("u65534"))
t(os.rename, p("u65534"), p("taken"))
t(os.rename, p("u65533"), p("u65534"))
t(lambda: os.write(os.open(p("u65534"), os.O_WRONLY | os.O_APPEND), b"+"))
t(os.chmod, p("u65534"), 0o600)
t(os.rename, p("u65533"), p("mine"))
t(os.unlink, p("mine"))
print(" ".join(res))
"""
    p = as_user(OTHER, code, str(b / "tmp"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["EPERM", "EPERM", "EPERM", "ok", "EPERM", "ok", "ok"]
    see((b, a), "own file gone", lambda: not exists(a / "tmp" / f"u{OTHER}"))
    assert read_bytes(a / "tmp" / f"u{NOBODY}") == b"u65534+"
    # the directory's owner may remove anybody's file
    p = as_user(OWNER, TRY + "t(os.unlink, sys.argv[1]); print(*res)", str(a / "tmp" / "u65534"))
    assert p.stdout.split() == ["ok"], p.stderr
    see((a, b), "removed by the directory's owner", lambda: not exists(b / "tmp" / "u65534"))


# What each case does, as root (setup) and as nobody (action); see
# test_setuid_setgid_cleared_like_tmpfs.
SUID_SETUP = """
import os, sys
d, case = sys.argv[1], sys.argv[2]
f = os.path.join(d, case)
if case == "sgid-dir":
    os.mkdir(f); os.chown(f, 0, 4242); os.chmod(f, 0o2777)
else:
    with open(f, "w") as h: h.write("data")
    own, mode = {"write-by-owner": (65534, 0o6755), "chmod-sgid": (65534, 0o755),
                 "sgid-no-xgrp": (0, 0o2767)}.get(case, (0, 0o6777))
    os.chown(f, own, 0 if case == "chmod-sgid" else own)
    os.chmod(f, mode)
"""
SUID_ACTION = """
import os, sys
d, case = sys.argv[1], sys.argv[2]
f = os.path.join(d, case)
os.umask(0)
if case in ("write-by-other", "write-by-owner", "sgid-no-xgrp"):
    with open(f, "a") as h: h.write("+")
elif case == "truncate-by-other":
    os.truncate(f, 1)
elif case == "o_trunc-by-other":
    os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
elif case == "ftruncate-by-other":
    fd = os.open(f, os.O_WRONLY); os.ftruncate(fd, 2); os.close(fd)
elif case == "chmod-sgid":
    os.chmod(f, 0o2755)
elif case == "sgid-dir":
    os.close(os.open(os.path.join(f, "file"), os.O_CREAT | os.O_WRONLY, 0o2755))
    os.mkdir(os.path.join(f, "sub"), 0o755)
"""
SUID_CASES = ["write-by-other", "truncate-by-other", "o_trunc-by-other", "ftruncate-by-other",
              "write-by-owner", "write-by-root", "chown-by-root", "chmod-sgid", "sgid-dir",
              "sgid-no-xgrp"]


def test_setuid_setgid_cleared_like_tmpfs(mounts, shm_dir):
    """Writing, truncating (also through open(O_TRUNC)) or chowning a
    setuid/setgid file clears those bits as on a local filesystem (tmpfs is
    the reference); files created in a setgid directory by a user outside
    its group do not keep S_ISGID."""
    a, b = mounts(2, opts=("allow_other",))
    shm_dir.chmod(0o755)
    ref = shm_dir / "tmpfs-ref"
    ref.mkdir()
    ref.chmod(0o777)
    os.chmod(a.path, 0o777)
    result = {}
    for name, d, other in (("tmpfs", ref, ref), ("shmfs", a.path, b.path)):
        for case in SUID_CASES:
            run(["/usr/bin/python3", "-c", SUID_SETUP, d, case])
        if other != d:
            wait_until(lambda: all(exists(Path(other) / c) for c in SUID_CASES), 5)
        for case in SUID_CASES:
            if case == "write-by-root":
                write_bytes(Path(other) / case, b"+", "ab")
            elif case == "chown-by-root":
                os.chown(Path(other) / case, NOBODY, -1)
            else:
                p = as_user(NOBODY, SUID_ACTION, str(other), case)
                assert p.returncode == 0, (name, case, p.stderr)
        out = {}
        for case in SUID_CASES:
            paths = [case] + ([f"{case}/file", f"{case}/sub"] if case == "sgid-dir" else [])
            for rel in paths:
                st = os.stat(Path(other) / rel)
                out[rel] = (oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid)
        result[name] = out
    tmpfs, shmfs = result["tmpfs"], result["shmfs"]
    # The kernel's FUSE code keeps S_ISGID without group-execute (a
    # mandatory-locking marker, not a privilege) on a write by a user
    # outside the group; tmpfs clears it.  Either is safe.
    assert shmfs.pop("sgid-no-xgrp")[0] in (tmpfs.pop("sgid-no-xgrp")[0], "0o2767")
    assert shmfs == tmpfs
    # and what that means
    for case in ("write-by-other", "truncate-by-other", "o_trunc-by-other", "ftruncate-by-other",
                 "write-by-owner", "chown-by-root"):
        assert not int(shmfs[case][0], 8) & (stat.S_ISUID | stat.S_ISGID), (case, shmfs[case])
    assert int(shmfs["write-by-root"][0], 8) & stat.S_ISUID
    assert shmfs["sgid-dir/file"][2] == 4242 and not int(shmfs["sgid-dir/file"][0], 8) & 0o2000
    assert int(shmfs["sgid-dir/sub"][0], 8) & 0o2000


def test_setuid_files_of_a_peer_do_not_elevate(mounts):
    """A peer can write a setuid-root executable into the region: the mount
    is nosuid, so running it gives no privilege."""
    a = mounts(1, opts=("allow_other",), one=True)
    os.chmod(a.path, 0o755)
    ident = "/usr/bin/id"
    write_bytes(a / "id", read_bytes(ident))
    os.chmod(a / "id", 0o4755)
    assert os.stat(a / "id").st_mode & stat.S_ISUID
    p = run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             str(a / "id"), "-u"], check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(NOBODY)], "a setuid file in the region gave privileges"


# ---- symlinks stored in the region ----------------------------------------------------

IN_NONBLOCK = 0o4000
IN_ALL_EVENTS = 0xFFF


class Inotify:
    """Every event on some host paths (an open, a read, a change...)."""

    def __init__(self, *paths):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK)
        assert self.fd >= 0
        for p in paths:
            assert self.libc.inotify_add_watch(self.fd, os.fsencode(p), IN_ALL_EVENTS) >= 0, p

    def events(self):
        out = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                wd, mask, _, n = struct.unpack_from("iIII", buf, i)
                out.append((wd, hex(mask)))
                i += 16 + n

    def close(self):
        os.close(self.fd)


def test_region_symlinks_are_never_followed_by_the_daemon(mounts):
    """Symlinks in the region that point at host paths: readlink gives
    their bytes; operations on the link itself (lchown, utimes and xattrs
    without following, rename, hard links, unlink, O_NOFOLLOW opens)
    change the link and never open or touch what it points at; a user who
    follows one reaches the host path with that user's own rights only --
    the daemon never resolves a target, as root or otherwise."""
    a, b = mounts(2, opts=("allow_other",))
    os.chmod(a.path, 0o777)
    canary = Canary()
    try:
        shadow = os.stat("/etc/shadow")
        targets = {"shadow": "/etc/shadow", "canary": str(canary.path / "data"),
                   "canary-dir": str(canary.path), "escape": "../" * 20 + "etc/passwd",
                   "proc": "/proc/self/root/etc/shadow", "secret": str(canary.path / "secret")}
        for name, t in targets.items():
            os.symlink(t, a / name)
        see((a, b), "links", lambda: all(exists(b / n) for n in targets))
        watch = Inotify(canary.path, canary.path / "data", canary.path / "secret",
                        canary.path / "sub")
        try:
            for m in (a, b):
                for name, t in targets.items():
                    st = os.lstat(m / name)
                    assert stat.S_ISLNK(st.st_mode) and st.st_size == len(t), name
                    assert os.readlink(m / name) == t
                    os.lchown(m / name, 1234, 4321)
                    os.utime(m / name, ns=(5, 6), follow_symlinks=False)
                    os.setxattr(m / name, "trusted.tag", b"on the link", follow_symlinks=False)
                    assert os.getxattr(m / name, "trusted.tag", follow_symlinks=False) == \
                        b"on the link"
                    assert attempt(os.open, m / name, os.O_RDONLY | os.O_NOFOLLOW) == "ELOOP"
                    assert attempt(os.open, m / name,
                                   os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW) == "ELOOP"
                    fd = os.open(m / name, os.O_PATH | os.O_NOFOLLOW)
                    assert stat.S_ISLNK(os.fstat(fd).st_mode)
                    os.close(fd)
                    try:
                        os.chmod(m / name, 0o600, follow_symlinks=False)
                    except (NotImplementedError, OSError):
                        pass  # Linux has no lchmod
                    os.link(m / name, m / f"{name}.hard", follow_symlinks=False)
                    os.rename(m / f"{name}.hard", m / f"{name}.moved")
                    assert os.readlink(m / f"{name}.moved") == t
                    os.unlink(m / f"{name}.moved")
                    st = os.lstat(m / name)
                    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (1234, 4321, 6), name
            # the same through a user who may not read the targets: refused
            # by the host's own mode bits -- nothing is read on anybody's behalf
            p = as_user(NOBODY, TRY + """
m = sys.argv[1]
for n in ("shadow", "proc", "secret"):
    t(lambda: open(os.path.join(m, n), "rb").read())
t(os.readlink, os.path.join(m, "shadow"))
print(" ".join(res))
""", str(b))
            assert p.stdout.split() == ["EACCES", "EACCES", "EACCES", "ok"], p.stderr
            assert watch.events() == [], "a target of a symlink in the region was touched"
        finally:
            watch.close()
        canary.check()
        now = os.stat("/etc/shadow")
        assert (now.st_mtime_ns, now.st_ctime_ns, now.st_uid, now.st_mode) == \
            (shadow.st_mtime_ns, shadow.st_ctime_ns, shadow.st_uid, shadow.st_mode)
    finally:
        import shutil
        shutil.rmtree(canary.path, ignore_errors=True)


# Accepted: odd but valid.  Rejected: what the format forbids.
PEER_NAMES = [b"\xff\xfe not utf-8", b"new\nline", b"\x01\x02\x1b[31mcontrol", b"-rf", b"*",
              b" ", b"\\", b"$(reboot)", b"`id`", b"n" * 255, b"..."]
PEER_TARGETS = [b"/etc/shadow", b"\xff\n\x01\x1b[0m", b"../" * 1000 + b"x", b"/" * 4095,
                b"t" * 4096, b"/proc/self/root/../../etc/passwd"]
PEER_BAD_NAMES = [b"a/b", b"/", b"a\0b", b".", b"..", b"", b"n" * 256]
PEER_BAD_TARGETS = [b"", b"a\0b", b"t" * 4097]


@pytest.mark.expect_errors  # the rejected records are reported
@pytest.mark.no_fsck  # they are also in the log: the test repairs it itself
def test_hostile_names_and_targets_from_a_peer(region, mounts):
    """Names and symlink targets with any bytes a peer may write: served as
    they are (listdir, lstat, readlink return the exact bytes); names with
    '/' or NUL, '.', '..', empty or too long ones, and targets with NUL,
    empty or too long are rejected on every host and reported."""
    a, b = mounts(2)
    peer = Peer(region)
    peer.join()
    ino = 1000
    ok, bad = {}, []
    for name in PEER_NAMES:
        ino += 1
        peer.publish(ed.LR_CREATE, ed.p_create(ino, 1, S_IFREG | 0o644, name, uid=NOBODY))
        ok[name] = None
    for i, t in enumerate(PEER_TARGETS):
        ino += 1
        name = b"link%d" % i
        peer.publish(ed.LR_CREATE, ed.p_create(ino, 1, S_IFLNK | 0o777, name, target=t))
        ok[name] = t
    for name in PEER_BAD_NAMES:
        ino += 1
        bad.append(peer.publish(ed.LR_CREATE, ed.p_create(ino, 1, S_IFREG | 0o644, name))[1])
    for t in PEER_BAD_TARGETS:
        ino += 1
        bad.append(peer.publish(ed.LR_CREATE,
                                ed.p_create(ino, 1, S_IFLNK | 0o777, b"badlink", target=t))[1])
    peer.publish(ed.LR_CREATE, ed.p_create(ino + 1, 1, S_IFREG | 0o644, b"last"))
    peer.close()
    for m in (a, b):
        wait_until(lambda: exists(m / "last"), 10)
        names = set(os.listdir(os.fsencode(m.path)))
        assert names == set(ok) | {b"last"}, names ^ (set(ok) | {b"last"})
        for name, t in ok.items():
            p = os.path.join(os.fsencode(m.path), name)
            st = within("lstat", [a, b], os.lstat, p)
            if t is None:
                assert stat.S_ISREG(st.st_mode) and st.st_uid == NOBODY
                continue
            assert stat.S_ISLNK(st.st_mode) and st.st_size == len(t)
            if len(t) < 4096:
                assert within("readlink", [a, b], os.readlink, p) == t
            else:
                # longer than the kernel's PATH_MAX: no program could use it
                got = within("readlink", [a, b], attempt, os.readlink, p)
                assert got in ("ok", "ENAMETOOLONG", "EIO", "EINVAL"), got
        text = m.logtext()
        for seq in bad:
            assert f"rejected record {seq} " in text, (seq, text)
    for m in (a, b):
        assert m.unmount()
    p = run([BIN / "fsck.shmfs", "-y", region.path], check=False, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr
    assert run([BIN / "fsck.shmfs", "-n", region.path], check=False).returncode == 0
    c = mounts(1, one=True)
    assert set(os.listdir(os.fsencode(c.path))) == set(ok) | {b"last"}


# ---- option strings ----------------------------------------------------------------------

def start_daemon(region, mnt, *args, cwd=None, env=None, timeout=30):
    """shmfs REGION MNT -f ARGS: a refused start returns (exit code,
    stderr); a mount returns (None, Popen) and the caller unmounts."""
    log = Path(str(mnt) + ".log")
    with open(log, "wb") as lf:
        p = subprocess.Popen([str(BIN / "shmfs"), str(region), str(mnt), "-f", *args],
                             stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, cwd=cwd, env=env)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if p.poll() is not None:
            return p.returncode, log.read_text(errors="replace")
        mi = mountinfo().get(str(mnt))
        if mi and mi[1] == "fuse.shmfs":
            return None, p
        time.sleep(0.01)
    p.kill()
    p.wait()
    raise AssertionError(f"shmfs {region} {args} neither mounted nor exited within {timeout} s:\n"
                         + log.read_text(errors="replace"))


def stop_daemon(mnt, p):
    run(["fusermount3", "-u", "-z", mnt], check=False)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"daemon on {mnt} did not exit after its unmount")
    assert p.returncode >= 0, f"daemon died of signal {-p.returncode}"
    log = Path(str(mnt) + ".log").read_text(errors="replace")
    assert "Sanitizer" not in log and "runtime error" not in log, log


def refused(rc, err):
    assert rc is not None, "mounted"
    assert rc > 0, f"exit {rc}"
    assert "Sanitizer" not in err and "runtime error" not in err, err
    assert err.strip(), "refused without a word"


@pytest.mark.parametrize("opt", [
    "bogus", "host=", "host=" + "a" * 64, "host=a b", "host=a\nb", "host=\x1b[31mred",
    "host=a\tb", "host=\x7f", "user_id=12", "fd=3"],
    ids=["unknown", "empty-host", "host-too-long", "host-space", "host-newline", "host-escape",
         "host-tab", "host-del", "user_id", "fd"])
def test_bad_option_strings_are_refused(region, mnt_base, opt):
    mnt = mnt_base / "m"
    mnt.mkdir()
    rc, err = start_daemon(region, mnt, "-o", opt)
    refused(rc, err)
    assert str(mnt) not in mountinfo()
    assert active_hosts(region) == []


def active_hosts(region):
    """The host slots in state active: [(slot, state, name, pid)]."""
    return [h for h in region.hosts() if h[1] == "active"]


def test_bad_command_lines_are_refused(region, mnt_base):
    mnt = mnt_base / "m"
    mnt.mkdir()
    for args in ([str(region)], [str(region), str(mnt), "extra"], [str(region), str(mnt), "-o"],
                 [str(region), str(mnt), "--bogus"]):
        p = run([BIN / "shmfs", *args], check=False)
        assert p.returncode > 0 and p.stderr.strip(), (args, p.returncode, p.stderr)
        assert str(mnt) not in mountinfo()


@pytest.mark.parametrize("opts,mounted_ro", [("ro", True), ("rw", False), ("ro,rw", False),
                                             ("rw,ro", True), ("ro,rw,ro", True)])
def test_ro_and_rw_last_one_wins(region, mnt_base, opts, mounted_ro):
    """As in mount(8), the last of ro and rw counts -- for the kernel's
    mount flags and for the daemon alike (a read-only daemon under a
    read-write mount, or the reverse, would be wrong both ways)."""
    mnt = mnt_base / "m"
    mnt.mkdir()
    rc, p = start_daemon(region, mnt, "-o", f"host=h,{opts}")
    assert rc is None, p
    try:
        wait_until(lambda: os.stat(mnt) is not None, 10)
        per, sup = mount_opts(mnt)
        assert ("ro" in per) == mounted_ro, per
        res = attempt(write_bytes, mnt / "f", b"x")
        assert res == ("EROFS" if mounted_ro else "ok"), res
        # a read-only daemon takes no host slot; a read-write one does
        assert [h[2] for h in active_hosts(region)] == ([] if mounted_ro else ["h"])
    finally:
        stop_daemon(mnt, p)


def test_odd_but_harmless_options(region, mnt_base):
    """Options that look like injection attempts stay what they are."""
    mnt = mnt_base / "m"
    mnt.mkdir()
    for opt, check in [
            ("host=x\\,allow_other", lambda: "allow_other" not in mount_opts(mnt)[1]
             and "x,allow_other" in [h[2] for h in active_hosts(region)]),
            ("host=" + "a" * 63, lambda: ["a" * 63] == [h[2] for h in active_hosts(region)]),
            ("", lambda: "default_permissions" in mount_opts(mnt)[1]),
            (",,", lambda: "allow_other" not in mount_opts(mnt)[1]),
            ("default_permissions,nodefault_permissions",
             lambda: "default_permissions" in mount_opts(mnt)[1])]:
        rc, p = start_daemon(region, mnt, "-o", opt)
        assert rc is None, (opt, p)
        try:
            wait_until(lambda: os.stat(mnt) is not None, 10)
            assert check(), (opt, mount_opts(mnt), region.hosts())
        finally:
            stop_daemon(mnt, p)
        wait_until(lambda: active_hosts(region) == [], 5)


# ---- region paths ------------------------------------------------------------------------

def bad_paths(d):
    """Region specs that must be refused (relative ones are relative to d)."""
    (d / "dir").mkdir()
    os.mkfifo(d / "fifo")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "sock"))
    s.close()
    os.mknod(d / "blk", 0o600 | stat.S_IFBLK, os.makedev(7, 200))
    os.symlink("loop2", d / "loop1")
    os.symlink("loop1", d / "loop2")
    os.symlink("/dev/null", d / "to-null")
    os.symlink("nowhere", d / "dangling")
    with open(d / "random.img", "wb") as f:
        f.write(os.urandom(16 << 20))
    with open(d / "small.img", "wb") as f:
        f.write(read_bytes("/etc/passwd"))
    with open(d / "zero.img", "wb") as f:
        pass
    ok = d / "ok.img"
    run([BIN / "mkfs.shmfs", "-q", "--size", "64M", ok])
    return [
        "", "nonexistent.img", "dir", "fifo", "sock", "blk", "loop1", "to-null", "dangling",
        "/dev/null", "/dev/zero", "/dev/mem", "/dev/full", "/proc/self/mem", "/proc/kcore",
        "/proc/sys/vm/drop_caches", "/proc/self/maps", "/proc/self/environ", "/sys/kernel/notes",
        "random.img", "small.img", "zero.img",
        f"{ok},offset=1G", f"{ok},offset=4097", f"{ok},length=1G", f"{ok},length=0",
        f"{ok},offset=-1", f"{ok},offset=99999999999999999999", f"{ok},map=1",
        f"{ok},offset=4K,offset=8K", f"{ok},foo=1", ",offset=2M", f"{ok},offset=60M",
        "x" * 5000, "no\nsuch\nfile", "$(touch pwned1);`touch pwned2`|touch pwned3",
    ]


def test_bad_region_paths_are_refused(shm_dir, mnt_base):
    """Every region spec that is not a usable shmfs region is refused with
    one message, quickly (a FIFO is never opened), without mounting,
    creating, or changing anything."""
    d = shm_dir / "paths"
    d.mkdir()
    specs = bad_paths(d)
    before = {p: (os.stat(p).st_mtime_ns, read_bytes(p)) for p in sorted(d.glob("*.img"))}
    listing = sorted(os.listdir(d))
    mnt = mnt_base / "m"
    mnt.mkdir()
    for spec in specs:
        rc, err = start_daemon(spec, mnt, "-o", "host=h", cwd=d)
        refused(rc, err)
        assert err.startswith("shmfs:") or "usage" in err, (spec, err)
        assert str(mnt) not in mountinfo(), spec
        assert sorted(os.listdir(d)) == listing, (spec, "created something")
    for p, (mtime, data) in before.items():
        assert os.stat(p).st_mtime_ns == mtime and read_bytes(p) == data, p


def test_odd_region_paths_that_work(shm_dir, mnt_base):
    """A relative path (opened before the daemon leaves for the
    background), and paths with shell metacharacters or a comma in the
    file name -- through shmfs itself and through mount.fuse3, which
    hands them to a shell: nothing is executed, and nothing but the path
    reaches the mount options."""
    d = shm_dir / "odd"
    d.mkdir()
    weird = "r;touch pwned1;$(touch pwned2)`touch pwned3`'\"|&<>.img"
    comma = "r.img,allow_other"
    for name in ("rel.img", weird, comma):
        run([BIN / "mkfs.shmfs", "-q", "--size", "64M", d / name])
    mnt = mnt_base / "m"
    mnt.mkdir()
    for spec, cwd in (("rel.img", d), (weird, d), (str(d / weird), None), (str(d / comma), None)):
        rc, p = start_daemon(spec, mnt, "-o", "host=h", cwd=cwd)
        assert rc is None, (spec, p)
        try:
            write_bytes(mnt / "hello", b"hi")
            assert "allow_other" not in mount_opts(mnt)[1]
        finally:
            stop_daemon(mnt, p)
    # without -f the daemon forks and leaves its directory: the region
    # named relative to it was opened before
    p = run([BIN / "shmfs", "rel.img", mnt, "-o", "host=bg"], check=False, cwd=d)
    assert p.returncode == 0, p.stderr
    try:
        assert read_bytes(mnt / "hello") == b"hi"
    finally:
        run(["fusermount3", "-u", "-z", mnt], check=False)
        time.sleep(0.2)
        for pid in pids_of_mount(mnt):
            os.kill(pid, 9)
    # mount.fuse3 runs the file system through /bin/sh -c
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    p = run(["mount.fuse3", d / weird, mnt, "-t", "shmfs", "-o", "host=helper"], check=False,
            env=env, cwd=d)
    try:
        assert p.returncode == 0, p.stderr
        assert read_bytes(mnt / "hello") == b"hi"
        assert mountinfo()[str(mnt)][2].endswith(".img"), mountinfo()[str(mnt)]
    finally:
        run(["fusermount3", "-u", "-z", mnt], check=False)
        time.sleep(0.2)
        for pid in pids_of_mount(mnt):
            os.kill(pid, 9)
    assert not [n for n in os.listdir(d) if n.startswith("pwned")]
    assert not [n for n in os.listdir(Path.cwd()) if n.startswith("pwned")]
