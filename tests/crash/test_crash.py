# SPDX-License-Identifier: MIT
"""Crash tests: daemons killed with SIGKILL at random moments, the holder of
the metadata lock killed, and copies of the region taken while everything
runs ("power failure").  See docs/crash-tests.md.

Two mounts of one region act as two hosts.  A (the survivor) runs a light
workload throughout and must never see an error; B runs metadata-heavy work
or large writes in several processes and is killed.  Every workload works
in its own directory and journals what it committed (model.py); after every
crash each directory must be exactly what was committed, give or take the
one operation that was in flight.
"""
import os
import random
import signal
import subprocess
import time

from crashlib import (LOCK_GEN_MASK, LOCK_OWNER_SHIFT, SUMMARY, Failure, MiB, Region, backtrace,
                      collect_fsck, copy_region, env_int, fmt_problems, journal_len, probe,
                      unexpected_problems, verify, verify_stable, wait_stopped, with_timeout)
from model import Journal

LARGE_OPS = ("create", "write", "flush", "close")


def is_large(inflight):
    """Was this journal operation part of writing a large file?"""
    return inflight is not None and inflight[1] in LARGE_OPS and \
        os.path.basename(inflight[2][0]).startswith("L")


class Cluster:
    """A region; the survivor A with one workload directory ("a") and the
    victim B with `nb` of them ("b0", "b1", ...); their journals."""

    def __init__(self, env, rng, size="512M", log_size="64M", lease_ms=500, nb=2,
                 a_opts=None, b_opts=None):
        self.env, self.rng = env, rng
        self.size, self.log_size, self.lease_ms, self.nb = size, log_size, lease_ms, nb
        self.a_opts = a_opts or dict(pace=8, max_entries=150, max_bytes=16 * MiB,
                                     large_max=2 * MiB)
        self.b_opts = b_opts or dict(max_entries=200, max_bytes=24 * MiB, large_max=8 * MiB)
        self.gen = 0
        self.nwork = 0
        self.A = self.B = self.wa = None
        self.full_checks = 0
        self.regions = 0
        self.max_stall = 0.0
        self.a_slowest = (0.0, None)     # A's workload's slowest operation
        self.new_region()

    # ---- setup --------------------------------------------------------------------

    def new_region(self):
        if self.gen:
            self.reg.path.unlink()
        self.gen += 1
        self.regions += 1
        env = self.env
        self.reg = Region.make(env.shm / f"region{self.gen}.img", self.size, "--log-size",
                               self.log_size, "--lease-ms", str(self.lease_ms))
        self.ja = env.work / f"g{self.gen}-a.journal"
        self.jb = [env.work / f"g{self.gen}-b{k}.journal" for k in range(self.nb)]
        self.A = env.daemon(self.reg, "a", mnt=env.mnt / "a")
        self.B = env.daemon(self.reg, "b", mnt=env.mnt / "b")
        for t in self.trees():
            with_timeout(lambda: os.mkdir(self.A.mnt / t), 30, f"mkdir {t} through A")
        last = self.trees()[-1]
        with_timeout(lambda: os.stat(self.B.mnt / last), 30, "a new directory seen from B")

    def trees(self):
        return ["a"] + [f"b{k}" for k in range(self.nb)]

    def journal(self, tree):
        return self.ja if tree == "a" else self.jb[int(tree[1:])]

    def start_a(self, mode="mixed"):
        self.nwork += 1
        self.wa = self.env.workload(self.A.mnt / "a", self.ja, self.rng.getrandbits(48), mode,
                                    f"a{self.nwork}", **self.a_opts).start()
        return self.wa

    def start_b(self, mode):
        out = []
        for k in range(self.nb):
            self.nwork += 1
            out.append(self.env.workload(self.B.mnt / f"b{k}", self.jb[k],
                                         self.rng.getrandbits(48), mode, f"b{self.nwork}",
                                         **self.b_opts).start())
        return out

    def wait_progress(self, ws, since, timeout=60.0):
        """Until every workload journaled something past byte since[k]."""
        t0 = time.monotonic()
        for w, s in zip(ws, since):
            while journal_len(w.journal) <= s:
                w.check_running("before the kill")
                if time.monotonic() - t0 > timeout:
                    raise Failure(f"the workload on {w.root} made no progress in {timeout} s")
                time.sleep(0.002)

    def check_logs(self, *daemons):
        bad = []
        for d in daemons:
            bad += d.problems()
        if bad:
            raise Failure("daemon logs:\n" + "\n".join(bad))

    # ---- after a crash ------------------------------------------------------------------

    def survivor_probe(self, tag, t_kill):
        """A must keep working: a create/write/read/unlink through it, and its
        workload still running.  Returns the seconds since the kill."""
        try:
            with_timeout(lambda: probe(self.A.mnt, f"probe-{tag}"), 60,
                         f"the survivor A ({tag})")
        except Failure as e:
            raise Failure(f"{e}\nA's threads:\n{backtrace(self.A.pid)}")
        stall = time.monotonic() - t_kill
        self.max_stall = max(self.max_stall, stall)
        if self.wa is not None:
            self.wa.check_running(f"after kill {tag}")
        return stall

    def after_kill(self, tag, t_kill, then=None):
        """B was killed: unmount it, check A, remount B, check the region
        with fsck -n while A is live, and B's trees against their journals.
        then() runs once the trees are checked, while fsck still runs.
        Returns (stall, {tree: outcome of its operation in flight}, fsck doc,
        what then() returned)."""
        self.B.unmount(clean=False)
        self.check_logs(self.B)
        stall = self.survivor_probe(tag, t_kill)
        self.B = self.env.daemon(self.reg, "b", mnt=self.env.mnt / "b")
        fsck = self.reg.fsck_async("-n")
        labels = {}
        nxt = None
        try:
            for k in range(self.nb):
                labels[f"b{k}"], _ = verify(self.B.mnt / f"b{k}", self.jb[k],
                                            what=f"after kill {tag}: ")
            if then is not None:
                nxt = then()
        finally:
            rc, doc = collect_fsck(fsck, f"fsck.shmfs -n after kill {tag}")
        bad = unexpected_problems(doc)
        if bad or rc not in (0, 4):
            raise Failure(f"after kill {tag}: fsck.shmfs -n (A live) exit {rc}, problems that a "
                          f"crash does not explain:\n{fmt_problems(bad)}")
        if self.wa is not None:
            self.wa.check_running(f"after the checks of kill {tag}")
        return stall, labels, doc, nxt

    # ---- everything unmounted ------------------------------------------------------------

    def full_check(self, why, repair="-p", restart=True):
        """Stop A's workload, unmount both, repair, check clean, remount both
        and verify every tree through both mounts."""
        self.full_checks += 1
        if self.wa is not None:
            self.wa.stop()
            st = self.wa.stats()
            if st.get("max_latency", 0) > self.a_slowest[0]:
                self.a_slowest = (st["max_latency"], st.get("max_latency_op"))
        verify(self.A.mnt / "a", self.ja, what=f"{why}: A before unmounting: ")
        for d in (self.A, self.B):
            d.unmount(clean=True)
        self.check_logs(self.A, self.B)
        rc, doc = self.reg.fsck(repair)
        bad = unexpected_problems(doc)
        after = [p for p in doc.get("problems", []) if p.get("after_repair")]
        if bad or after or rc not in (0, 1):
            raise Failure(f"{why}: fsck.shmfs {repair} exit {rc}; problems a crash does not "
                          f"explain or left after repair:\n{fmt_problems(bad + after)}")
        rc, doc = self.reg.fsck("-n")
        if rc != 0 or doc["problems"] or doc["summary"]["rejected"]:
            raise Failure(f"{why}: fsck.shmfs -n after fsck.shmfs {repair} exit {rc}:\n"
                          f"{fmt_problems(doc['problems'])}")
        s = doc["summary"]
        self.A = self.env.daemon(self.reg, "a", mnt=self.env.mnt / "a")
        self.B = self.env.daemon(self.reg, "b", mnt=self.env.mnt / "b")
        for d in (self.A, self.B):
            for t in self.trees():
                verify(d.mnt / t, self.journal(t), resolve=False,
                       what=f"{why}: tree {t} through {d.host}: ")
        if restart and (s["log_used"] > s["log_size"] // 2 or s["records"] > 60000):
            # the log is not compacted (and every mount replays all of it):
            # carry on in a fresh region
            for d in (self.A, self.B):
                d.unmount(clean=True)
            self.check_logs(self.A, self.B)
            self.new_region()
        if restart:
            self.start_a()
        return s


def seed_rng(env, what):
    return random.Random(f"{env.seed}-{what}")


def tally(d, k):
    d[k] = d.get(k, 0) + 1


# ---- SIGKILL at random moments -----------------------------------------------------------

def kill_lifecycle(cl, rng, tag, phase):
    """kill -9 B while it mounts (joins the host table, replays the log) or
    while it unmounts (leaves the host table)."""
    t_kill = None
    if phase == "mount":
        cl.B.unmount(clean=True)
        cl.check_logs(cl.B)
        cl.B = cl.env.daemon(cl.reg, "b", mnt=cl.env.mnt / "b", wait=False)
        time.sleep(rng.uniform(0, 0.06))
    else:
        um = subprocess.Popen(["fusermount3", "-u", str(cl.B.mnt)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, 0.01))
    t_kill = time.monotonic()
    cl.B.kill9()
    if phase == "unmount":
        um.wait(60)
    return cl.after_kill(tag, t_kill)[:3]


def test_kill9_random_moments(crash_env):
    """kill -9 the daemon of B at random moments of metadata-heavy work and
    of large writes, SHMFS_CRASH_ITERS times (default 100), plus kills while
    it mounts and unmounts."""
    env = crash_env
    rng = seed_rng(env, "kill9")
    iters = env_int("SHMFS_CRASH_ITERS", 100)
    every = env_int("SHMFS_CRASH_FULL_EVERY", 10)
    cl = Cluster(env, rng, nb=env_int("SHMFS_CRASH_B_WORKERS", 2))
    cl.start_a()
    kinds = {"metadata": 0, "large write": 0, "mount": 0, "unmount": 0}
    mid_write = 0       # kills with a large file's write, fsync or close in flight
    inflight, outcome, residue = {}, {}, {}
    t_start = time.monotonic()
    ws = None
    for i in range(iters):
        mode = "large" if i % 2 else "meta"
        t_it = time.monotonic()
        if ws is None:
            # (after a kill, the next workloads start while fsck runs)
            ws = (cl.start_b(mode), [journal_len(j) for j in cl.jb])
        ws, since = ws
        cl.wait_progress(ws, since)
        t_started = time.monotonic()
        time.sleep(rng.uniform(0.0, 0.3 if mode == "meta" else 0.5))
        for w in ws:
            w.check_running(f"kill {i}")
        t_kill = time.monotonic()
        cl.B.kill9()
        ops = []
        for w in ws:
            w.wait(60)
            j = Journal(w.journal)
            ops.append(j.inflight)
            tally(inflight, j.inflight[1] if j.inflight else "(none)")
        kinds["large write" if mode == "large" else "metadata"] += 1
        mid_write += any(map(is_large, ops))
        t_after = time.monotonic()
        nmode = "meta" if i % 2 else "large"
        lifecycle = i % 5 == 4
        full = (i + 1) % every == 0 or i == iters - 1
        nxt = None if lifecycle or full else \
            (lambda: ([journal_len(j) for j in cl.jb], cl.start_b(nmode)))
        stall, labels, doc, ws = cl.after_kill(str(i), t_kill, then=nxt)
        if ws is not None:
            ws = (ws[1], ws[0])
        t_done = time.monotonic()
        sv = with_timeout(lambda: os.statvfs(cl.A.mnt), 60, "statfs through A")
        free_a = sv.f_bfree * sv.f_frsize >> 20
        unused = (doc["summary"]["data_size"] - doc["summary"]["bytes_used"]) >> 20
        for lb in labels.values():
            tally(outcome, lb.split()[0])
        for p in doc["problems"]:
            tally(residue, p["code"])
        print(f"kill {i}: {mode}, in flight: {[o[1] if o else None for o in ops]} -> "
              f"{sorted(labels.values())}; survivor after {stall * 1000:.0f} ms; "
              f"fsck -n: {sorted(p['code'] for p in doc['problems'])}; "
              f"start {t_started - t_it:.2f} s, run {t_kill - t_started:.2f} s, "
              f"stop {t_after - t_kill:.2f} s, "
              f"checks {t_done - t_after:.2f} s; free through A {free_a} MiB, unused {unused} MiB, "
              f"{doc['summary']['records']} records")
        if lifecycle:
            phase = "mount" if i % 10 == 4 else "unmount"
            stall, _, doc = kill_lifecycle(cl, rng, f"{i}-{phase}", phase)
            kinds[phase] += 1
            print(f"kill {i}-{phase}: survivor after {stall * 1000:.0f} ms; fsck -n: "
                  f"{sorted(p['code'] for p in doc['problems'])}")
        if full:
            s = cl.full_check(f"full check after kill {i}",
                              repair="-p" if (i // every) % 2 else "-y", restart=i != iters - 1)
            print(f"full check after kill {i}: {s['records']} records, {s['seals']} seals, "
                  f"{s['files']} files, log {s['log_used'] * 100 // s['log_size']}% used")
    wall = time.monotonic() - t_start
    total = sum(kinds.values())
    line = (f"crash kill9: {iters} iterations, {total} kills (metadata work {kinds['metadata']}, "
            f"large writes {kinds['large write']}, mounting {kinds['mount']}, unmounting "
            f"{kinds['unmount']}; a large file's write, fsync or close in flight at {mid_write}), "
            f"{cl.full_checks} full checks, "
            f"{cl.regions} region(s), max survivor stall {cl.max_stall * 1000:.0f} ms "
            f"(A's slowest operation {cl.a_slowest[0] * 1000:.0f} ms), {wall:.0f} s, "
            f"seed {env.seed}")
    SUMMARY.append(line)
    SUMMARY.append(f"  operations in flight: {dict(sorted(inflight.items()))}; "
                   f"they happened: {outcome}; fsck -n while A live found: {residue}")
    print(line)


# ---- the holder of the metadata lock -------------------------------------------------------

def test_kill_lock_holder(crash_env):
    """Catch B holding the metadata lock (SIGSTOP, read ctl_lock, SIGCONT
    until it does), kill it, and measure how long A stalls: about a lease,
    after which A breaks the lock and seals the log tail."""
    env = crash_env
    rng = seed_rng(env, "lock")
    kills = env_int("SHMFS_CRASH_LOCK_KILLS", 5)
    lease = 500
    cl = Cluster(env, rng, size="256M", log_size="32M", lease_ms=lease)
    cl.start_a()
    looks_total = 0
    moments = {}
    stalls = []
    seals = None
    t_start = time.monotonic()
    for k in range(kills):
        since = [journal_len(j) for j in cl.jb]
        ws = cl.start_b("meta")
        cl.wait_progress(ws, since)
        slot = cl.reg.slot_of(cl.B.pid)
        caught = False
        t0 = time.monotonic()
        looks = 0
        # odd kills wait (for a while) for a moment after B published its
        # record and before it let go of the lock
        want_published = k % 2 == 1
        while not caught and time.monotonic() - t0 < 60:
            for w in ws:
                w.check_running(f"lock kill {k}")
            looks += 1
            cl.B.signal(signal.SIGSTOP)
            try:
                wait_stopped(cl.B.pid)
                word = cl.reg.lock_word()
                if word >> LOCK_OWNER_SHIFT == slot + 1:
                    # the same answer from shmfs-dump, while B cannot move
                    dump = cl.reg.dump()
                    assert dump["control"]["lock_owner_slot"] == slot, dump["control"]
                    last = dump["records"][-1] if dump["records"] else {}
                    published = last.get("host") == slot and \
                        last.get("lock_gen") == (word & LOCK_GEN_MASK) & 0xffffffff
                    if published or not want_published or time.monotonic() - t0 > 20:
                        t_kill = time.monotonic()
                        cl.B.kill9()
                        caught = True
            finally:
                if not caught:
                    cl.B.signal(signal.SIGCONT)
            time.sleep(rng.uniform(0, 0.004))
        if not caught:
            raise Failure(f"B (slot {slot}) never held the metadata lock in {looks} looks")
        looks_total += looks
        tally(moments, "after publishing" if published else "before publishing")
        for w in ws:
            w.wait(60)
        stall, labels, doc, _ = cl.after_kill(f"lock{k}", t_kill)
        stalls.append(stall)
        n = doc["summary"]["seals"]
        # A took the lock of a dead holder: it sealed the slot after the tail
        assert seals is None or n > seals, f"no new seal after killing the lock holder ({n})"
        seals = n
        print(f"lock kill {k}: B (slot {slot}) held the lock at look {looks}, "
              f"{'after' if published else 'before'} publishing its record "
              f"({last.get('type')}); A's first change "
              f"{stall * 1000:.0f} ms after the kill (lease {lease} ms); {n} seals in the log; "
              f"B's operations in flight -> {sorted(labels.values())}")
    cl.full_check("final check", repair="-y", restart=False)
    line = (f"crash lock holder: {kills} kills of the lock holder ({looks_total} looks; "
            f"{moments}), "
            f"survivor stall min {min(stalls) * 1000:.0f} ms max {max(stalls) * 1000:.0f} ms "
            f"(lease {lease} ms), {time.monotonic() - t_start:.0f} s")
    SUMMARY.append(line)
    print(line)


# ---- power failure: copies of the region -------------------------------------------------

def test_power_failure_snapshots(crash_env):
    """Copy the region at random instants while A and B work: most copies
    with every daemon stopped (an instant), some racing the daemons.  Each
    copy must repair (fsck -y) to a filesystem that checks clean, mounts, and
    holds every file committed before the copy."""
    env = crash_env
    rng = seed_rng(env, "snap")
    count = env_int("SHMFS_CRASH_SNAPSHOTS", 15)
    racing_only = bool(os.environ.get("SHMFS_CRASH_RACING_ONLY"))
    cl = Cluster(env, rng, size="128M", log_size="24M", lease_ms=1000,
                 a_opts=dict(pace=2, max_entries=150, max_bytes=12 * MiB, large_max=2 * MiB),
                 b_opts=dict(max_entries=150, max_bytes=20 * MiB, large_max=6 * MiB))
    cl.start_a()
    wbs = cl.start_b("mixed")
    workloads = [cl.wa] + wbs
    checked = {"frozen": 0, "racing": 0}
    repaired = {}
    max_freeze = 0.0
    names = 0
    t_start = time.monotonic()
    for s in range(count):
        time.sleep(rng.uniform(0.05, 0.4))
        frozen = not racing_only and s % 3 != 2
        kind = "frozen" if frozen else "racing"
        snap = Region(env.shm / f"snap{s}.img")
        trees = cl.trees()
        if frozen:
            t0 = time.monotonic()
            stopped = []
            try:
                for d in (cl.A, cl.B):
                    d.signal(signal.SIGSTOP)
                    stopped.append(d)
                for d in stopped:
                    wait_stopped(d.pid)
                lens = {t: journal_len(cl.journal(t)) for t in trees}
                copy_region(cl.reg.path, snap.path)
            finally:
                for d in stopped:
                    d.signal(signal.SIGCONT)
            max_freeze = max(max_freeze, time.monotonic() - t0)
            jsnap = {}
            for t in trees:
                jsnap[t] = env.work / f"snap{s}-{t}.journal"
                with open(cl.journal(t), "rb") as f:
                    jsnap[t].write_bytes(f.read(lens[t]))
        else:
            lens0 = {t: journal_len(cl.journal(t)) for t in trees}
            copy_region(cl.reg.path, snap.path)
            lens1 = {t: journal_len(cl.journal(t)) for t in trees}
        for w in workloads:
            w.check_running(f"snapshot {s}")
            # the checks below need the CPUs more than the workloads do
            w.proc.send_signal(signal.SIGSTOP)

        rc_y, doc = snap.fsck("-y")
        codes = sorted({p["code"] for p in doc["problems"]})
        for c in codes:
            tally(repaired, c)
        after = [p for p in doc["problems"] if p.get("after_repair")]
        if frozen:
            bad = unexpected_problems(doc)
        else:
            # a racing copy may hold a torn log tail or a torn host slot,
            # never a damaged superblock
            bad = [p for p in doc["problems"] if p["code"].startswith(("sb_", "ctl_magic"))]
        if bad or after or rc_y not in (0, 1):
            raise Failure(f"{kind} snapshot {s}: fsck.shmfs -y exit {rc_y}:\n"
                          f"{fmt_problems(bad + after)}")
        rc, doc2 = snap.fsck("-n")
        if rc != 0 or doc2["problems"] or doc2["summary"]["rejected"]:
            raise Failure(f"{kind} snapshot {s}: fsck.shmfs -n after -y exit {rc}:\n"
                          f"{fmt_problems(doc2['problems'])}")
        m = env.daemon(snap, f"snap{s}", mnt=env.mnt / "snap")
        try:
            for t in trees:
                if frozen:
                    _, n = verify(m.mnt / t, jsnap[t], resolve=False,
                                  what=f"frozen snapshot {s}, tree {t}: ")
                else:
                    n = verify_stable(m.mnt / t, cl.journal(t), lens0[t], lens1[t],
                                      what=f"racing snapshot {s}, tree {t}: ")
                names += n
            # the repaired copy is a working filesystem
            with_timeout(lambda: probe(m.mnt, "after-repair"), 60, f"snapshot {s} mounted")
        finally:
            m.unmount(clean=True)
        cl.check_logs(m)
        snap.path.unlink()
        checked[kind] += 1
        print(f"{kind} snapshot {s}: fsck -y exit {rc_y}, repaired {codes}; "
              f"{doc['summary']['records']} records")
        for w in workloads:
            w.proc.send_signal(signal.SIGCONT)
        if doc2["summary"]["log_used"] > doc2["summary"]["log_size"] // 2:
            # the log is not compacted: carry on in a fresh region
            for w in wbs:
                w.stop()
            cl.full_check(f"full check after snapshot {s}", repair="-p")
            wbs = cl.start_b("mixed")
            workloads = [cl.wa] + wbs
    for w in wbs:
        w.stop()
    cl.full_check("final check", repair="-p", restart=False)
    line = (f"crash snapshots: {sum(checked.values())} checked ({checked['frozen']} frozen, "
            f"{checked['racing']} racing), {names} names verified, longest freeze "
            f"{max_freeze * 1000:.0f} ms, repairs {repaired}, "
            f"{time.monotonic() - t_start:.0f} s")
    SUMMARY.append(line)
    print(line)
