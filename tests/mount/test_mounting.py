# SPDX-License-Identifier: MIT
"""Mounting: the host table (join, leave on unmount and SIGTERM, reclaim of a
killed daemon's slot after its lease), the daemonized daemon, and
mount(8) / fstab through mount.fuse3."""
import os
import signal
import subprocess
import textwrap
import time

import pytest

from pathlib import Path

from conftest import (BIN, exists, mountinfo, pid_alive, pids_of_mount, read_bytes, run, visible,
                      wait_until, write_bytes)


def wait_until_or_false(pred, timeout):
    try:
        wait_until(pred, timeout)
        return True
    except AssertionError:
        return False


def host_names(region):
    return sorted(name for _, state, name, _ in region.hosts() if state == "active")


def test_hosts_join_and_leave_on_unmount(region, mounts):
    a, b, c = mounts(3)
    assert host_names(region) == ["h0", "h1", "h2"]
    pids = {name: pid for _, _, name, pid in region.hosts()}
    assert pids["h1"] == b.proc.pid
    write_bytes(a / "f", b"x")
    assert b.unmount()
    assert b.proc.returncode == 0
    assert host_names(region) == ["h0", "h2"]
    # the others keep working
    assert read_bytes(c / "f") == b"x"
    assert c.unmount() and c.proc.returncode == 0
    assert host_names(region) == ["h0"]


def test_sigterm_unmounts_and_leaves(region, mounts):
    a, b = mounts(2)
    write_bytes(b / "f", b"before")
    b.proc.send_signal(signal.SIGTERM)
    b.proc.wait(10)
    assert b.proc.returncode in (0, 1)  # exit status: test_signal_exit_status
    wait_until(lambda: not b.mounted(), 5)
    assert host_names(region) == ["h0"]
    assert read_bytes(a / "f") == b"before"
    # a new mount may take the slot again
    c = mounts(1, one=True)
    assert read_bytes(c / "f") == b"before"
    assert host_names(region) == ["h0", "h2"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_exit_status(region, mounts, sig):
    """A shutdown asked for by a signal is a clean one: unmounted, slot
    left, exit status 0 (systemd counts anything else as a failure)."""
    a = mounts(1, one=True)
    write_bytes(a / "f", b"x")
    a.proc.send_signal(sig)
    a.proc.wait(10)
    assert not a.mounted()
    assert host_names(region) == []
    assert a.proc.returncode == 0, f"exit status {a.proc.returncode} after {sig.name}"


@pytest.mark.expect_errors
def test_killed_daemon_slot_reclaimed_after_lease(make_region, mounts):
    reg = make_region("64M", "--lease-ms", "500", "--max-hosts", "2")
    a, b = mounts(2, reg=reg)
    write_bytes(a / "f", b"survives")
    assert host_names(reg) == ["h0", "h1"]
    b.kill(signal.SIGKILL)
    t0 = time.monotonic()
    c = mounts(1, reg=reg, one=True, wait=False)
    wait_until(lambda: "h2" in host_names(reg), 10)
    elapsed = time.monotonic() - t0
    print(f"slot reclaimed {elapsed * 1000:.0f} ms after kill -9 (lease 500 ms)")
    # B beat at most a heartbeat period before it died: its lease ran at
    # least ~375 ms more
    assert elapsed >= 0.3, "a slot was taken before its holder's lease ran out"
    assert host_names(reg) == ["h0", "h2"]
    wait_until(c.mounted, 10)
    assert read_bytes(c / "f") == b"survives"
    write_bytes(c / "g", b"from c")
    visible("reclaimed slot -> a", lambda: exists(a / "g"))
    # every slot is live now: a fourth daemon is refused
    d = mounts(1, reg=reg, one=True, wait=False)
    d.proc.wait(30)
    assert d.proc.returncode != 0 and not d.mounted()
    assert "slot" in d.logtext(), d.logtext()
    assert host_names(reg) == ["h0", "h2"]


def test_refused_mount_reports_failure(make_region, mounts, mnt_base):
    """When the daemon cannot join (every host slot is live), `shmfs` /
    mount(8) must fail -- not report success and leave a mount point that
    answers ENOTCONN."""
    reg = make_region("64M", "--lease-ms", "400", "--max-hosts", "1")
    mounts(1, reg=reg, one=True)
    m = mnt_base / "refused"
    m.mkdir()
    p = run([BIN / "shmfs", reg, m, "-o", "host=refused"], check=False)
    try:
        time.sleep(0.5)  # let a wrongly "successful" daemon finish failing
        state = "mounted" if m in [Path(x) for x in mountinfo()] else "not mounted"
        assert p.returncode != 0, (f"shmfs exited 0 although it could not join ({state}); "
                                   f"stderr: {p.stderr!r}")
        assert "slot" in p.stderr
        assert state == "not mounted"
    finally:
        run(["fusermount3", "-u", "-z", m], check=False)
        for pid in pids_of_mount(m):
            os.kill(pid, signal.SIGKILL)


def test_killed_daemon_does_not_block_writers(make_region, mounts):
    """kill -9 in the middle of a stream of metadata changes: the survivor
    keeps going (it may wait out the lease if the lock was held)."""
    reg = make_region("64M", "--lease-ms", "500")
    a, b = mounts(2, reg=reg)
    child = subprocess.Popen(["/usr/bin/python3", "-c", textwrap.dedent("""
        import os, sys
        d = sys.argv[1]
        i = 0
        while True:
            open(os.path.join(d, f"f{i}"), "w").close()
            i += 1
    """), str(b.path)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    b.kill(signal.SIGKILL)
    child.wait(10)
    t0 = time.monotonic()
    for i in range(20):
        write_bytes(a / f"after{i}", b"x")
    assert time.monotonic() - t0 < 5
    names = os.listdir(a.path)
    assert sum(n.startswith("after") for n in names) == 20
    assert sum(n.startswith("f") for n in names) > 10


def test_daemonized_daemon_exits_after_unmount(region, mnt_base):
    """Without -f, shmfs forks into the background; unmounting must still
    make it leave its slot and exit."""
    m = mnt_base / "bg"
    m.mkdir()
    log = mnt_base / "bg.log"
    with open(log, "wb") as lf:
        p = subprocess.run([str(BIN / "shmfs"), str(region), str(m), "-o", "host=bg"],
                           stdout=lf, stderr=lf, timeout=30)
    assert p.returncode == 0, log.read_text()
    pid = None
    try:
        pids = pids_of_mount(m)
        assert len(pids) == 1, pids
        pid = pids[0]
        assert [h[2] for h in region.hosts()] == ["bg"]
        write_bytes(m / "f", b"bg")
        assert read_bytes(m / "f") == b"bg"
        run(["fusermount3", "-u", m])
        wait_until(lambda: region.hosts() == [], 5)
        assert wait_until_or_false(lambda: not pid_alive(pid), 5), \
            f"daemon {pid} still running 5 s after its unmount"
    finally:
        run(["fusermount3", "-u", "-z", m], check=False)
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert "error" not in log.read_text().lower(), log.read_text()


def test_host_table_names_the_daemon(region, mnt_base):
    """The pid in a daemonized mount's host slot is the daemon's (the one
    that heartbeats), not that of the parent that exited after forking."""
    m = mnt_base / "bg"
    m.mkdir()
    run([BIN / "shmfs", region, m, "-o", "host=bg"])
    pid = None
    try:
        pids = pids_of_mount(m)
        assert len(pids) == 1, pids
        pid = pids[0]
        slot_pid = region.hosts()[0][3]
        assert slot_pid == pid, f"host table says pid {slot_pid}, the daemon is {pid}"
    finally:
        run(["fusermount3", "-u", "-z", m], check=False)
        time.sleep(0.2)
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_mount_fuse3_helper(region, mounts, mnt_base):
    """mount.fuse3 finds `shmfs` on PATH (what mount -t fuse.shmfs runs)."""
    a = mounts(1, one=True)
    m = mnt_base / "helper"
    m.mkdir()
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    pid = None
    try:
        run(["mount.fuse3", region, m, "-t", "shmfs", "-o", "host=helper,allow_other"], env=env)
        assert "helper" in [h[2] for h in region.hosts()]
        pids = pids_of_mount(m)
        assert len(pids) == 1, pids
        pid = pids[0]
        write_bytes(m / "via-helper", b"hello")
        visible("helper mount -> fixture mount", lambda: exists(a / "via-helper"))
        assert read_bytes(a / "via-helper") == b"hello"
        with open("/proc/self/mountinfo") as f:
            line = [ln for ln in f if f" {m} " in ln][0]
        assert "fuse.shmfs" in line and "allow_other" in line
    finally:
        run(["fusermount3", "-u", "-z", m], check=False)
    wait_until(lambda: "helper" not in [h[2] for h in region.hosts()], 5)
    try:
        assert wait_until_or_false(lambda: not pid_alive(pid), 5), \
            f"daemon {pid} still running 5 s after its unmount"
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


# mount(8) runs its helpers with a fixed PATH, so inside a private mount
# namespace a directory holding `shmfs` is bind-mounted over
# /usr/local/sbin; nothing outside the namespace changes.
NS_SCRIPT = r"""
set -eu
mount --make-rprivate /
# copies of every other FUSE mount (other tests', other users') would keep
# their daemons from ever seeing an unmount while this namespace lives
grep ' - fuse' /proc/self/mountinfo | cut -d' ' -f5 | while read -r m; do umount -l "$m" || true; done
mount --bind "$SBIN" /usr/local/sbin
# 1. mount -t fuse.shmfs
mount -t fuse.shmfs "$REGION" "$M1" -o host=bymount
grep -q " $M1 .* fuse.shmfs " /proc/self/mountinfo
echo "written by mount(8)" > "$M1/by-mount"
# 2. an fstab line
printf '%s %s fuse.shmfs host=byfstab,allow_other,noauto 0 0\n' "$REGION" "$M2" > "$FSTAB"
mount --fstab "$FSTAB" "$M2"
grep " $M2 " /proc/self/mountinfo | grep -q allow_other
cat "$M2/by-mount" > /dev/null
echo "written via fstab" > "$M2/by-fstab"
cat "$M1/by-fstab"
umount "$M1"
umount "$M2"
echo done
"""


def test_mount_t_fuse_shmfs_and_fstab(region, mounts, mnt_base):
    a = mounts(1, one=True)
    sbin = mnt_base / "sbin"
    sbin.mkdir()
    (sbin / "shmfs").symlink_to(BIN / "shmfs")
    for d in ("m1", "m2"):
        (mnt_base / d).mkdir()
    env = dict(os.environ, SBIN=str(sbin), REGION=str(region), M1=str(mnt_base / "m1"),
               M2=str(mnt_base / "m2"), FSTAB=str(mnt_base / "fstab"))
    p = subprocess.Popen(["unshare", "-m", "sh", "-c", NS_SCRIPT], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, out + err
        assert out.split() == ["written", "via", "fstab", "done"], out + err
        assert read_bytes(a / "by-mount") == b"written by mount(8)\n"
        assert read_bytes(a / "by-fstab") == b"written via fstab\n"
        # both left the host table on umount, and their daemons exited
        wait_until(lambda: [h[2] for h in region.hosts()] == ["h0"], 5)
        assert wait_until_or_false(
            lambda: not pids_of_mount(mnt_base / "m1") and not pids_of_mount(mnt_base / "m2"), 5), \
            "daemons still running 5 s after umount"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for m in ("m1", "m2"):
            for pid in pids_of_mount(mnt_base / m):
                os.kill(pid, signal.SIGKILL)
