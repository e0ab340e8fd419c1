# SPDX-License-Identifier: MIT
"""Fixtures for the command-line tools: where they are, and scratch regions
on /dev/shm.  The on-media editor the tests use (Region, record payloads,
XXH3) is tests/media.py.
"""
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # media.py: the on-media format and editor


# ---- running the tools ----------------------------------------------------

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")

class Tools:
    def __init__(self, bindir):
        self.bindir = Path(bindir)
        self.mkfs_path = self.bindir / "mkfs.shmfs"
        self.dump_path = self.bindir / "shmfs-dump"

    def run(self, exe, *args, timeout=60):
        p = subprocess.run([str(exe), *map(str, args)], capture_output=True, timeout=timeout)
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        # A sanitizer build reports through stderr (and may exit 1, which
        # tests of corrupt regions expect anyway): never let that pass.
        for marker in SANITIZER_MARKERS:
            assert marker not in p.err, f"{exe.name} {list(args)}:\n{p.err}"
        assert p.returncode >= 0, f"{exe.name} {list(args)} died of signal {-p.returncode}"
        return p

    def mkfs(self, *args, **kw):
        return self.run(self.mkfs_path, *args, **kw)

    def dump(self, *args, **kw):
        return self.run(self.dump_path, *args, **kw)

    def dump_json(self, *args, **kw):
        p = self.dump("--json", *args, **kw)
        assert p.returncode in (0, 1), (p.returncode, p.err)
        p.doc = json.loads(p.stdout)  # must be valid JSON whatever the region holds
        return p


@pytest.fixture(scope="session")
def bindir():
    d = Path(os.environ.get("SHMFS_BIN", REPO / "build" / "bin"))
    for tool in ("mkfs.shmfs", "shmfs-dump"):
        if not os.access(d / tool, os.X_OK):
            pytest.fail(f"{d / tool} is not built (set SHMFS_BIN to the build's bin directory)")
    return d


@pytest.fixture(scope="session")
def tools(bindir):
    return Tools(bindir)


def _scratch_dir():
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


@pytest.fixture
def region(tmp_path):
    """Path of a region file that does not exist yet, on /dev/shm (tmpfs)
    when possible; removed afterwards."""
    base = _scratch_dir() or tmp_path
    path = base / f"shmfs-cli-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    yield path
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def make_file(path, size, fill=None):
    """A sparse file of size bytes; fill (bytes) is written at offset 0."""
    with open(path, "wb") as f:
        f.truncate(size)
        if fill:
            f.write(fill)


@pytest.fixture
def formatted(tools, region):
    """A 64 MiB region formatted with a known label and UUID."""
    p = tools.mkfs("--size", "64M", "-L", "test", "-U",
                   "01234567-89ab-cdef-0123-456789abcdef", "-q", region)
    assert p.returncode == 0, p.err
    return region
