# SPDX-License-Identifier: MIT
"""libshmfs as users get it: only the public functions exported, a
versioned SONAME, and an installed header, pkg-config file and shim that a
program builds and runs against."""
import os
import shutil
import subprocess

import pytest

from conftest import BIN, LIBDIR, PRELOAD, run

PUBLIC = {"shmfs_map", "shmfs_map_fd", "shmfs_map_fd_at", "shmfs_unmap", "shmfs_remap",
          "shmfs_sync", "shmfs_map_error", "shmfs_is_mapped"}

PROGRAM = r'''
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <shmfs/shmfs.h>

int main(int argc, char **argv)
{
	size_t len = 0;
	void *p = shmfs_map(argv[1], PROT_READ, 0, &len);
	if (p)
		return 1;
	printf("%d %s\n", errno, shmfs_map_error());
	return errno == ENOTSUP ? 0 : 2;
}
'''


def defined_symbols(lib):
    out = run(["nm", "-D", "--defined-only", lib]).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def test_exports_and_soname():
    lib = LIBDIR / "libshmfs.so"
    assert defined_symbols(lib) - {"SHMFS_1.0"} == PUBLIC
    dyn = run(["readelf", "-d", lib]).stdout
    assert "Library soname: [libshmfs.so.1]" in dyn
    assert os.path.realpath(lib).endswith("libshmfs.so.1.0.0")
    assert defined_symbols(PRELOAD) == {"mmap", "mmap64", "munmap", "mremap", "msync"}


def test_install_and_build_against_it(tmp_path):
    if not shutil.which("cc") or not shutil.which("pkg-config"):
        pytest.skip("needs cc and pkg-config")
    prefix = tmp_path / "prefix"
    run(["cmake", "--install", BIN.parent, "--prefix", prefix], timeout=120)
    pcs = list(prefix.rglob("shmfs.pc"))
    assert len(pcs) == 1, pcs
    libdir = pcs[0].parent.parent
    assert (prefix / "include" / "shmfs" / "shmfs.h").exists()
    assert (libdir / "libshmfs.so.1").exists() and (libdir / "libshmfs-preload.so").exists()
    env = dict(os.environ, PKG_CONFIG_PATH=str(pcs[0].parent))
    flags = run(["pkg-config", "--cflags", "--libs", "shmfs"], env=env).stdout.split()
    assert "-lshmfs" in flags
    assert [os.path.realpath(f[2:]) for f in flags if f.startswith("-L")] == [os.path.realpath(libdir)]
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    extra = []
    if "libasan" in run(["ldd", libdir / "libshmfs.so.1"]).stdout:
        extra = ["-fsanitize=address,undefined"]
    run(["cc", "-Wall", "-Werror", "-o", tmp_path / "prog", src, *flags, *extra])
    (tmp_path / "plain").write_bytes(b"x" * 4096)
    p = subprocess.run([tmp_path / "prog", tmp_path / "plain"], capture_output=True, text=True,
                       env=dict(os.environ, LD_LIBRARY_PATH=str(libdir)))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not a file of a shmfs mount" in p.stdout
    # the installed shim finds the installed library by itself
    ldd = run(["ldd", libdir / "libshmfs-preload.so"]).stdout
    line = next(ln for ln in ldd.splitlines() if "libshmfs.so.1" in ln)
    assert os.path.realpath(line.split("=>")[1].split()[0]) == \
        os.path.realpath(libdir / "libshmfs.so.1"), ldd
