# SPDX-License-Identifier: MIT
"""Fixtures for the crash tests (see docs/crash-tests.md).

    crash_env    a work directory on /dev/shm for regions, a directory for
                 mount points and one on local disk for journals and
                 daemon logs; the random seed.  Every daemon started through
                 it is unmounted and reaped at teardown, and the test fails
                 if one left sanitizer output or an error message in its log.

Environment: SHMFS_BIN (the build's bin directory), SHMFS_CRASH_SEED,
SHMFS_CRASH_ITERS, SHMFS_CRASH_LOCK_KILLS, SHMFS_CRASH_SNAPSHOTS,
SHMFS_CRASH_FULL_EVERY, SHMFS_CRASH_KEEP (keep the work directories of a
failed test).
"""
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import crashlib  # noqa: E402
from crashlib import BIN, SUMMARY, Daemon, Failure, env_int  # noqa: E402

DEFAULT_SEED = 20261122


def pytest_terminal_summary(terminalreporter):
    for line in SUMMARY:
        terminalreporter.write_line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.crash_failed = rep.failed


class CrashEnv:
    def __init__(self, name, seed):
        self.seed = seed
        self.shm = Path(tempfile.mkdtemp(prefix=f"shmfs-crash-{name}-", dir="/dev/shm"))
        self.mnt = Path(tempfile.mkdtemp(prefix=f"shmfs-crash-mnt-{name}-", dir="/tmp"))
        self.work = Path(tempfile.mkdtemp(prefix=f"shmfs-crash-work-{name}-", dir="/tmp"))
        self.mnt.chmod(0o755)
        self.daemons = []
        self.workloads = []
        self.counter = 0

    def daemon(self, region, host, mnt=None, wait=True):
        self.counter += 1
        mnt = mnt or self.mnt / f"{host}"
        d = Daemon(region, mnt, host, self.work / f"{host}-{self.counter}.log")
        self.daemons.append(d)
        return d.start() if wait else d.spawn()

    def workload(self, *args, **kw):
        w = crashlib.Workload(*args, workdir=self.work, **kw)
        self.workloads.append(w)
        return w

    def log_problems(self):
        out = []
        for d in self.daemons:
            out += d.problems()
        return out

    def teardown(self):
        problems = []
        for w in self.workloads:
            if w.running():
                w.stop_file.touch()
                w.proc.send_signal(signal.SIGCONT)
        for w in self.workloads:
            if w.proc is not None and w.proc.poll() is None:
                try:
                    w.proc.wait(30)
                except Exception:
                    w.proc.kill()
                    w.proc.wait(30)
        for d in reversed(self.daemons):
            if d.proc is None or d.proc.poll() is not None:
                if d.mounted():
                    crashlib.run(["fusermount3", "-u", "-z", d.mnt], timeout=60)
                continue
            try:
                d.unmount(clean=False)
            except Failure as e:
                problems.append(str(e))
        problems += self.log_problems()
        return problems

    def remove(self):
        for d in (self.shm, self.mnt, self.work):
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def crash_env(request):
    for tool in ("shmfs", "mkfs.shmfs", "fsck.shmfs", "shmfs-dump"):
        if not os.access(BIN / tool, os.X_OK):
            pytest.fail(f"{BIN / tool} is not built (set SHMFS_BIN to the build's bin directory)")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    seed = env_int("SHMFS_CRASH_SEED", DEFAULT_SEED)
    env = CrashEnv(request.node.name.replace("[", "-").replace("]", ""), seed)
    print(f"seed {seed} (SHMFS_CRASH_SEED={seed} to repeat); work directories "
          f"{env.shm} {env.work}")
    yield env
    problems = env.teardown()
    failed = getattr(request.node, "crash_failed", False) or bool(problems)
    if failed and os.environ.get("SHMFS_CRASH_KEEP"):
        print(f"kept for inspection: {env.shm} {env.work}")
    elif failed:
        # journals and daemon logs are small: keep them
        print(f"journals and daemon logs kept in {env.work}")
        shutil.rmtree(env.shm, ignore_errors=True)
        shutil.rmtree(env.mnt, ignore_errors=True)
    else:
        env.remove()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
