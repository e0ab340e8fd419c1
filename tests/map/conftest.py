# SPDX-License-Identifier: MIT
"""Fixtures for the direct-mapping tests.

Everything tests/mount/conftest.py offers (regions, mounts, pair, the
teardown checks of the daemons' logs and of fsck) is re-exported from
here, plus:

    driver          a factory: driver(user=None) starts bin/map-driver (libshmfs
                    under the control of a test, see tests/map/map_driver.c)
                    and returns a Driver; every driver is stopped before the
                    mounts are unmounted
    preload_env     the environment that runs a program with libshmfs-preload.so
    run_preloaded   run /usr/bin/python3 code under the shim

The libraries are found next to SHMFS_BIN: SHMFS_BIN/../lib.
"""
import errno
import importlib.util
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

_MOUNT_CONFTEST = Path(__file__).resolve().parents[1] / "mount" / "conftest.py"
_spec = importlib.util.spec_from_file_location("shmfs_mount_conftest", _MOUNT_CONFTEST)
mc = importlib.util.module_from_spec(_spec)
sys.modules["shmfs_mount_conftest"] = mc
_spec.loader.exec_module(mc)

# fixtures and hooks, under their own names, so that pytest finds them here
from shmfs_mount_conftest import *  # noqa: E402,F401,F403
from shmfs_mount_conftest import (BIN, MiB, pytest_configure,  # noqa: E402,F401
                                  pytest_terminal_summary, run)

LIBDIR = BIN.parent / "lib"
DRIVER = BIN / "map-driver"
PRELOAD = LIBDIR / "libshmfs-preload.so"
PYTHON = "/usr/bin/python3"


class DriverError(Exception):
    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.errno = getattr(errno, name, None)
        self.message = message


class Driver:
    """One map-driver process; cmd() sends a command, returns the words
    after "ok", or raises DriverError(errno name, message)."""

    def __init__(self, user=None, env=None):
        argv = [str(DRIVER)]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.buf = b""

    def _line(self, timeout):
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            r, _, _ = select.select([fd], [], [], timeout)
            if not r:
                raise AssertionError(f"map-driver: no reply within {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")
                raise AssertionError(f"map-driver exited ({self.proc.wait()}): {err}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def send(self, *words):
        self.proc.stdin.write((" ".join(str(w) for w in words) + "\n").encode())
        self.proc.stdin.flush()

    def reply(self, timeout=60):
        line = self._line(timeout)
        word, _, rest = line.partition(" ")
        if word == "ok":
            return rest.split()
        if word == "err":
            name, _, msg = rest.partition(" ")
            raise DriverError(name, msg)
        raise AssertionError(f"map-driver: unexpected reply {line!r}")

    def cmd(self, *words, timeout=60):
        self.send(*words)
        return self.reply(timeout)

    def error(self, *words):
        """The DriverError a command must fail with."""
        with pytest.raises(DriverError) as ei:
            self.cmd(*words)
        return ei.value

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace")
        return err


@pytest.fixture
def driver(mounts):
    """driver(user=None) -> Driver.  Depends on mounts, so drivers stop
    (and let go of their files) before the daemons are unmounted."""
    if not os.access(DRIVER, os.X_OK):
        pytest.fail(f"{DRIVER} is not built")
    made = []

    def start(user=None, env=None):
        d = Driver(user, env)
        made.append(d)
        return d

    yield start
    problems = []
    for d in made:
        err = d.stop()
        if any(m in err for m in mc.SANITIZER):
            problems.append(err)
    if problems:
        pytest.fail("map-driver:\n" + "\n".join(problems), pytrace=False)


def _sanitizer_runtime():
    """A sanitizer build's shim needs its runtime loaded first."""
    p = run(["ldd", PRELOAD], check=False)
    for line in p.stdout.splitlines():
        if "libasan" in line and "=>" in line:
            return line.split("=>")[1].split()[0]
    return None


@pytest.fixture(scope="session")
def preload_env():
    if not PRELOAD.exists():
        pytest.fail(f"{PRELOAD} is not built")
    env = dict(os.environ)
    rt = _sanitizer_runtime()
    env["LD_PRELOAD"] = f"{rt}:{PRELOAD}" if rt else str(PRELOAD)
    if rt:
        # the interpreter's own allocations are not ours to judge
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    env.pop("SHMFS_PRELOAD", None)
    env.pop("SHMFS_PRELOAD_DEBUG", None)
    return env


@pytest.fixture
def run_preloaded(preload_env):
    """run_preloaded(code, *args, env=None, user=None, check=True) -> CompletedProcess
    of /usr/bin/python3 -c code under the shim."""

    def go(code, *args, env=None, user=None, check=True, timeout=120):
        e = dict(preload_env)
        e.update(env or {})
        argv = [PYTHON, "-c", code, *map(str, args)]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + argv
        p = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=timeout)
        if any(m in p.stderr for m in mc.SANITIZER):
            raise AssertionError(f"sanitizer report:\n{p.stderr}")
        if check and p.returncode != 0:
            raise AssertionError(f"python exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p

    return go


def extents(path):
    """The file's extent map: (info dict, [(foff, roff, len)])."""
    import struct
    raw = os.getxattr(path, "user.shmfs.map")
    (magic, ver, hdr, uid, ino, gen, size, unit, n, _r) = struct.unpack_from("<IHH16sQQQQII", raw)
    ext = [struct.unpack_from("<QQQ", raw, hdr + 24 * i) for i in range(n)]
    return dict(magic=magic, version=ver, uuid=uid, ino=ino, gen=gen, size=size, unit=unit), ext


def region_info(path):
    import struct
    raw = os.getxattr(path, "user.shmfs.region")
    (magic, ver, hdr, uid, typ, _r, off, size, align) = struct.unpack_from("<IHH16sIIQQQ", raw)
    rpath = raw[hdr:].split(b"\0", 1)[0].decode()
    return dict(magic=magic, uuid=uid, type=typ, offset=off, size=size, align=align, path=rpath)
