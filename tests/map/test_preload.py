# SPDX-License-Identifier: MIT
"""libshmfs-preload.so under an unmodified program: /usr/bin/python3 and
its mmap module.  MAP_SHARED mappings of shmfs files become direct ones;
munmap, mremap and msync behave; everything else passes through."""
import os
import subprocess

from conftest import PYTHON, MiB, extents, mc, region_info

wait_until = mc.wait_until

# Shared by the snippets below: where a mapping's memory comes from.
HELPERS = r'''
import ctypes, mmap, os, struct, sys, time
def address(m):
    c = ctypes.c_char.from_buffer(m)
    a = ctypes.addressof(c)
    del c
    return a
def backing(addr):
    for line in open('/proc/self/maps'):
        f = line.split(None, 5)
        lo, hi = (int(x, 16) for x in f[0].split('-'))
        if lo <= addr < hi:
            return f[5].strip() if len(f) > 5 else ''
    return None
def fds_to(path):
    n = 0
    for fd in os.listdir('/proc/self/fd'):
        try:
            n += os.readlink('/proc/self/fd/' + fd) == path
        except OSError:
            pass
    return n
'''

PINGPONG = HELPERS + r'''
path, role, rounds, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 0)                       # MAP_SHARED, read and write
os.close(fd)
print('backing', backing(address(m)), flush=True)
u = struct.Struct('<Q')
lead = role == 'lead'
deadline = time.monotonic() + timeout
for i in range(1, rounds + 1):
    if lead:
        m[0:8] = u.pack(i)
    at = 64 if lead else 0
    while u.unpack_from(m, at)[0] != i:    # memory only: no system call
        if time.monotonic() > deadline:
            print('timeout at round', i, flush=True)
            sys.exit(1)
    if not lead:
        m[64:72] = u.pack(i)
print('rounds', rounds, flush=True)
'''


def test_python_mmap_shared_across_mounts(mounts, preload_env):
    """Two unmodified Python processes, one per mount, each with mmap.mmap
    of the same file: every store of one is seen by the other."""
    a, b = mounts(2)
    with open(a / "ring", "wb") as f:
        f.write(bytes(4096))
    reg = region_info(a / "ring")["path"]
    rounds = 500
    procs = [subprocess.Popen([PYTHON, "-c", PINGPONG, str(m / "ring"), role, str(rounds), "60"],
                              env=preload_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for m, role in ((b, "follow"), (a, "lead"))]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, out + err
        assert f"backing {reg}" in out, out      # the region, not the mount
        assert f"rounds {rounds}" in out


def test_python_mmap_resize_flush_close(mounts, run_preloaded):
    """mmap.resize (ftruncate + mremap), flush (msync), slicing, close
    (munmap): the data reaches the other mount, and the file is let go."""
    a, b = mounts(2)
    with open(a / "f", "wb") as f:
        f.write(b"\x01" * MiB)
    code = HELPERS + r'''
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 0)
reg = backing(address(m))
assert reg.startswith('/') and 'f' != reg, reg
assert fds_to(path) >= 1
m[0:5] = b'hello'
m.flush()                                        # msync: published
m.resize(3 << 20)                                # grows the file and the mapping
assert backing(address(m)) == reg
m[(3 << 20) - 5:] = b'world'
m.flush()
m.resize(1 << 19)                                # shrinks both
m[0:2] = b'HE'
m.flush(0, 4096)
os.close(fd)
m.close()
assert fds_to(path) == 0, 'the library still holds the file'
print('region', reg)
'''
    p = run_preloaded(code, a / "f")
    reg = region_info(a / "f")["path"]
    assert f"region {reg}" in p.stdout
    with open(b / "f", "rb") as f:
        data = f.read()
    assert len(data) == 512 * 1024 and data[:5] == b"HEllo" and data[5:10] == b"\x01" * 5


def test_partial_munmap_and_msync_range(mnt, run_preloaded):
    """munmap of the middle of a direct mapping (through ctypes, as a C
    program would) leaves the rest mapped; msync of part of it publishes."""
    with open(mnt / "f", "wb") as f:
        f.write(bytes(MiB))
    code = HELPERS + r'''
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.mremap.restype = ctypes.c_void_p
libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
p = libc.mmap(None, 1 << 20, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
assert p not in (None, ctypes.c_void_p(-1).value)
reg = backing(p)
assert reg and not reg.startswith(os.path.dirname(path)), reg
# an offset mapping of the same file
q = libc.mmap(None, 8192, mmap.PROT_READ, mmap.MAP_SHARED, fd, 65536)
assert backing(q) == reg
ctypes.memmove(p + 65536, b'offset', 6)
assert ctypes.string_at(q, 6) == b'offset'
assert libc.munmap(q, 8192) == 0
os.close(fd)
assert libc.munmap(p + 4096, 4096) == 0
assert backing(p + 4096) is None and backing(p) == reg and backing(p + 8192) == reg
ctypes.memmove(p + 8192, b'tail', 4)
assert libc.msync(p + 8192, 4096, 4) == 0   # MS_SYNC
# MREMAP_MAYMOVE = 1: shrink what is left after the hole
r = libc.mremap(p + 8192, (1 << 20) - 8192, 65536, 1)
assert r == p + 8192, (hex(r), hex(p))
assert backing(p + 8192 + 65536) is None
assert libc.munmap(p, 4096) == 0 and libc.munmap(p + 8192, 65536) == 0
assert fds_to(path) == 0
print('done')
'''
    p = run_preloaded(code, mnt / "f")
    assert "done" in p.stdout
    with open(mnt / "f", "rb") as f:
        data = f.read()
    assert data[8192:8196] == b"tail" and data[65536:65542] == b"offset"


def test_passthrough(mnt, run_preloaded, tmp_path):
    """Private mappings, other filesystems, SHMFS_PRELOAD=off: untouched."""
    with open(mnt / "f", "wb") as f:
        f.write(b"p" * 65536)
    (tmp_path / "local").write_bytes(b"l" * 65536)
    code = HELPERS + r'''
path, local = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR)
priv = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE)
shared = mmap.mmap(fd, 0)
lfd = os.open(local, os.O_RDWR)
loc = mmap.mmap(lfd, 0)
anon = mmap.mmap(-1, 1 << 20)
anon[0:3] = b'abc'
print('private', backing(address(priv)))
print('shared', backing(address(shared)))
print('local', backing(address(loc)))
assert priv[:1] == b'p' and loc[:1] == b'l' and anon[:3] == b'abc'
'''
    p = run_preloaded(code, mnt / "f", tmp_path / "local")
    lines = dict(line.split(" ", 1) for line in p.stdout.splitlines())
    reg = region_info(mnt / "f")["path"]
    assert lines["private"] == str(mnt / "f")
    assert lines["shared"] == reg
    assert lines["local"] == str(tmp_path / "local")
    p = run_preloaded(code, mnt / "f", tmp_path / "local", env={"SHMFS_PRELOAD": "off"})
    lines = dict(line.split(" ", 1) for line in p.stdout.splitlines())
    assert lines["shared"] == str(mnt / "f")


def test_debug_log(mnt, run_preloaded):
    with open(mnt / "f", "wb") as f:
        f.write(b"d" * 8192)
    code = r'''
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
m.flush()
m.close()
'''
    p = run_preloaded(code, mnt / "f", env={"SHMFS_PRELOAD_DEBUG": "1"})
    assert "direct at" in p.stderr and "msync" in p.stderr and "munmap" in p.stderr, p.stderr


def test_fallback_when_region_is_closed(mounts, run_preloaded):
    """A user who cannot open the region still gets a working mapping
    (through the mount), and one warning."""
    a = mounts(1, opts=("allow_other",), one=True)
    with open(a / "pub", "wb") as f:
        f.write(b"w" * 65536)
    os.chmod(a / "pub", 0o666)
    code = r'''
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for _ in range(3):
    m = mmap.mmap(fd, 0)
    m[0:1] = b'W'
    m.flush()
    m.close()
print('ok')
'''
    p = run_preloaded(code, a / "pub", user=65534)
    assert "ok" in p.stdout
    assert p.stderr.count("shmfs-preload: direct mapping failed") == 1, p.stderr
    assert "access to the region" in p.stderr
    with open(a / "pub", "rb") as f:
        assert f.read(1) == b"W"


def test_create_size_map_unwritten(mounts, run_preloaded):
    """The usual shared-memory recipe -- create, ftruncate, mmap -- on an
    unwritten file: the shim's mapping allocates the space, keeping the
    size, and another mount sees the stores."""
    a, b = mounts(2)
    code = r'''
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 4 << 20)
m = mmap.mmap(fd, 0)
m[(4 << 20) - 3:] = b'end'
m.flush()
print('ok')
'''
    run_preloaded(code, a / "shm")
    wait_until(lambda: os.stat(b / "shm").st_size == 4 * MiB, timeout=2)
    info, ext = extents(b / "shm")
    assert sum(e[2] for e in ext) == 4 * MiB
    with open(b / "shm", "rb") as f:
        f.seek(4 * MiB - 3)
        assert f.read() == b"end"


def test_mprotect_writable_later(mnt, run_preloaded):
    """A file open for reading and writing, mapped PROT_READ: mprotect may
    make the mapping writable later, as with a mapping through the mount."""
    with open(mnt / "f", "wb") as f:
        f.write(bytes(65536))
    code = HELPERS + r'''
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
fd = os.open(sys.argv[1], os.O_RDWR)
p = libc.mmap(None, 65536, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
assert backing(p) and not backing(p).startswith(os.path.dirname(sys.argv[1]))
assert libc.mprotect(p, 65536, mmap.PROT_READ | mmap.PROT_WRITE) == 0, ctypes.get_errno()
ctypes.memmove(p + 100, b'rw', 2)
assert libc.msync(p, 65536, 4) == 0
print('ok')
'''
    run_preloaded(code, mnt / "f")
    with open(mnt / "f", "rb") as f:
        assert f.read()[100:102] == b"rw"
