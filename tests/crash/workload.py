# SPDX-License-Identifier: MIT
"""A workload for the crash tests: changes a directory tree on a mount and
journals every change (see model.py for the journal).

    workload.py ROOT JOURNAL --seed N --mode meta|large|mixed --stop FILE
                --stats FILE [--pace MS] [--max-entries N] [--max-bytes N]
                [--large-max BYTES]

It runs until FILE exists (exit 0) or an operation fails (exit 3, the error
on stderr): on a mount whose daemon was killed that is the expected end;
anywhere else it is a failure.  On exit it writes statistics (operations,
slowest operation) as JSON to the stats file.
"""
import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Journal, Model, content  # noqa: E402

FILE_MODES = (0o644, 0o600, 0o640, 0o755, 0o444)
DIR_MODES = (0o755, 0o700, 0o750, 0o775)
KiB, MiB = 1 << 10, 1 << 20

WEIGHTS = {
    "meta": dict(small=22, rename=14, unlink=12, mkdir=6, rmdir=5, symlink=5, link=5, chmod=6,
                 setxattr=4, append=8, truncate=4, extend=3, orphan=3, large=1),
    "large": dict(large=60, append=10, rename=8, unlink=12, truncate=3, extend=3, small=7),
    "mixed": dict(small=20, rename=10, unlink=10, mkdir=4, rmdir=3, symlink=3, link=3, chmod=4,
                  setxattr=3, append=6, truncate=3, extend=2, orphan=2, large=8),
}


class Stop(Exception):
    pass


class Workload:
    def __init__(self, a):
        self.a = a
        self.root = a.root
        self.rng = random.Random(a.seed)
        j = Journal(a.journal) if os.path.exists(a.journal) else None
        if j is not None and j.inflight is not None:
            sys.exit(f"workload: {a.journal}: operation #{j.inflight[0]} is still unresolved")
        self.model = j.model if j else Model()
        self.n = (j.last_n if j else 0) + 1
        self.jfd = os.open(a.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.cur = None
        self.t0 = 0.0
        self.stats = {"ops": 0, "by_op": {}, "max_latency": 0.0, "max_latency_op": None,
                      "slow": [], "started": time.time()}

    # ---- journal ------------------------------------------------------------------

    def begin(self, op, *args):
        args = [str(x) for x in args]
        self.cur = (self.n, op, args)
        os.write(self.jfd, ("I %d %s %s\n" % (self.n, op, " ".join(args))).encode())
        self.t0 = time.monotonic()

    def end(self):
        dt = time.monotonic() - self.t0
        n, op, args = self.cur
        os.write(self.jfd, b"D %d\n" % n)
        os.fdatasync(self.jfd)
        self.model.apply(op, args)
        self.n += 1
        self.cur = None
        st = self.stats
        st["ops"] += 1
        st["by_op"][op] = st["by_op"].get(op, 0) + 1
        if dt > st["max_latency"]:
            st["max_latency"] = dt
            st["max_latency_op"] = f"#{n} {op} {' '.join(args)} at {time.time():.3f}"
        if dt > 1.0 and len(st["slow"]) < 50:
            st["slow"].append((round(dt, 3), op, time.time()))

    def path(self, rel):
        return os.path.join(self.root, rel)

    # ---- choices ------------------------------------------------------------------

    def newname(self, prefix, depth_max=3):
        dirs = [""] + [d for d in self.model.dirs() if d.count("/") < depth_max - 1]
        d = self.rng.choice(dirs)
        name = f"{prefix}{self.n}"
        return f"{d}/{name}" if d else name

    def pick(self, kinds):
        c = [p for p, n in self.model.nodes.items() if n[0] in kinds]
        return self.rng.choice(c) if c else None

    # ---- operations -----------------------------------------------------------------

    def write_all(self, fd, data):
        mv = memoryview(data)
        while mv:
            k = os.write(fd, mv)
            mv = mv[k:]

    def op_small(self):
        p = self.newname("f")
        seed = self.rng.getrandbits(62)
        mode = self.rng.choice(FILE_MODES)
        size = self.rng.choice((0, 1, 100, 4095, 4096, 5000, 12288, 16 * KiB + 3))
        self.begin("create", p, seed, "%o" % mode)
        fd = os.open(self.path(p), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        self.end()
        if size:
            self.begin("write", p, 0, size)
            self.write_all(fd, content(seed, 0, size))
            self.end()
        self.begin("close", p, size)
        os.close(fd)
        self.end()

    def op_large(self):
        p = self.newname("L", depth_max=2)
        seed = self.rng.getrandbits(62)
        size = self.rng.randrange(self.a.large_max // 4, self.a.large_max + 1)
        self.begin("create", p, seed, "644")
        fd = os.open(self.path(p), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.end()
        at = 0
        while at < size:
            k = min(size - at, self.rng.choice((64 * KiB, 128 * KiB + 512, 256 * KiB, MiB)))
            self.begin("write", p, at, k)
            self.write_all(fd, content(seed, at, at + k))
            self.end()
            at += k
            if at < size and self.rng.random() < 0.25:
                self.begin("flush", p, at)
                os.fsync(fd)
                self.end()
        self.begin("close", p, size)
        os.close(fd)
        self.end()

    def op_append(self):
        p = self.pick("f")
        if p is None:
            return self.op_small()
        o = self.model.objs[self.model.nodes[p][1]]
        old = o["size"]
        add = self.rng.choice((1, 777, 4096, 20000)) if old < MiB else self.rng.choice(
            (4096, 256 * KiB, MiB))
        self.begin("append", p, old + add)
        fd = os.open(self.path(p), os.O_WRONLY | os.O_APPEND)
        try:
            self.write_all(fd, content(o["seed"], old, old + add))
        finally:
            os.close(fd)
        self.end()

    def op_truncate(self):
        """Shrink a file, or grow it (what it grows by reads as zeros --
        also where a writer that died had left bytes it never published)."""
        c = self.model.files()
        if not c:
            return self.op_small()
        p = self.rng.choice(c)
        o = self.model.objs[self.model.nodes[p][1]]
        if o["size"] == 0 or self.rng.random() < 0.4:
            new = o["size"] + self.rng.choice((1, 4095, 4096, 100000, 300 * KiB))
        else:
            new = self.rng.choice((0, o["size"] // 2, o["size"] - 1, o["size"] // 4096 * 4096))
            new = min(new, o["size"] - 1)
        self.begin("truncate", p, new)
        os.truncate(self.path(p), new)
        self.end()

    def op_extend(self):
        """A write past the end of a file: the gap reads as zeros."""
        p = self.pick("f")
        if p is None:
            return self.op_small()
        o = self.model.objs[self.model.nodes[p][1]]
        off = o["size"] + self.rng.choice((1, 1000, 4096, 70000, 200 * KiB))
        ln = self.rng.choice((1, 512, 4096, 50000))
        self.begin("extend", p, off, ln)
        fd = os.open(self.path(p), os.O_WRONLY)
        try:
            data = content(o["seed"], off, off + ln)
            while data:
                k = os.pwrite(fd, data, off)
                data, off = data[k:], off + k
        finally:
            os.close(fd)
        self.end()

    def op_rename(self):
        src = self.pick("fdl")
        if src is None:
            return self.op_small()
        kind = self.model.nodes[src][0]
        dst = None
        r = self.rng.random()
        if kind in "fl" and r < 0.3:
            dst = self.pick("fl")           # replace a file or symlink
        elif kind == "d" and r < 0.2:
            empty = [d for d in self.model.dirs() if not self.model.children(d)]
            dst = self.rng.choice(empty) if empty else None
        if dst is None or dst == src:
            dst = self.newname("r" if kind != "d" else "D")
        if kind == "d" and (dst == src or dst.startswith(src + "/")):
            return
        if self.model.nodes.get(dst, ("x",))[0] == "f" and kind == "f" and \
                self.model.nodes[dst][1] == self.model.nodes[src][1]:
            return                          # two names of one inode: rename does nothing
        self.begin("rename", src, dst)
        os.rename(self.path(src), self.path(dst))
        self.end()

    def op_unlink(self):
        p = self.pick("fl")
        if p is None:
            return self.op_rmdir()
        self.begin("unlink", p)
        os.unlink(self.path(p))
        self.end()

    def op_rmdir(self):
        empty = [d for d in self.model.dirs() if not self.model.children(d)]
        if not empty:
            return self.op_mkdir() if len(self.model.nodes) < self.a.max_entries else None
        p = self.rng.choice(empty)
        self.begin("rmdir", p)
        os.rmdir(self.path(p))
        self.end()

    def op_mkdir(self):
        p = self.newname("d")
        mode = self.rng.choice(DIR_MODES)
        self.begin("mkdir", p, "%o" % mode)
        os.mkdir(self.path(p), mode)
        self.end()

    def op_symlink(self):
        p = self.newname("s")
        target = self.rng.choice((f"../t{self.n}", f"f{self.n // 2}", "x" * 200, "/abs/path"))
        self.begin("symlink", p, target)
        os.symlink(target, self.path(p))
        self.end()

    def op_link(self):
        src = self.pick("f")
        if src is None:
            return self.op_small()
        p = self.newname("h")
        self.begin("link", src, p)
        os.link(self.path(src), self.path(p))
        self.end()

    def op_chmod(self, p=None):
        p = p or self.pick("fd")
        if p is None:
            return self.op_mkdir()
        kind = self.model.nodes[p][0]
        mode = self.rng.choice(DIR_MODES if kind == "d" else FILE_MODES)
        self.begin("chmod", p, "%o" % mode)
        os.chmod(self.path(p), mode)
        self.end()

    def op_setxattr(self):
        p = self.pick("f")
        if p is None:
            return self.op_small()
        k, v = f"user.k{self.rng.randrange(4)}", f"v{self.n}"
        self.begin("setxattr", p, k, v)
        os.setxattr(self.path(p), k, v.encode())
        self.end()

    def op_orphan(self):
        """The temporary-file pattern: unlinked while open, written on,
        closed.  A host killed in between leaves an orphan for the others."""
        p = self.newname("o")
        seed = self.rng.getrandbits(62)
        self.begin("create", p, seed, "600")
        fd = os.open(self.path(p), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.end()
        self.begin("write", p, 0, 100 * KiB)
        self.write_all(fd, content(seed, 0, 100 * KiB))
        self.end()
        self.begin("orphan", p)
        os.unlink(self.path(p))
        self.end()
        self.begin("write", p, 100 * KiB, 300 * KiB)
        self.write_all(fd, content(seed, 100 * KiB, 400 * KiB))
        if os.pread(fd, 16, 4096) != content(seed, 4096, 4096 + 16):
            raise OSError(0, f"orphan {p}: read back wrong bytes")
        self.end()
        self.begin("oclose", p)
        os.close(fd)
        self.end()

    # ---- main loop --------------------------------------------------------------------

    def step(self):
        m = self.model
        full = len(m.nodes) >= self.a.max_entries or m.data_bytes() >= self.a.max_bytes
        if full:
            big = [p for p in m.files() if m.objs[m.nodes[p][1]]["size"] >= 256 * KiB]
            r = self.rng.random()
            if big and m.data_bytes() >= self.a.max_bytes and r < 0.7:
                self.begin("unlink", self.rng.choice(big))
                os.unlink(self.path(self.cur[2][0]))
                self.end()
                return
            return (self.op_unlink if r < 0.8 else self.op_rmdir)()
        w = WEIGHTS[self.a.mode]
        kinds = list(w)
        kind = self.rng.choices(kinds, weights=[w[k] for k in kinds])[0]
        getattr(self, "op_" + kind)()

    def run(self):
        while not os.path.exists(self.a.stop):
            self.step()
            if self.a.pace:
                time.sleep(self.a.pace / 1000.0)

    def write_stats(self, **extra):
        self.stats.update(extra)
        self.stats["ended"] = time.time()
        with open(self.a.stats, "w") as f:
            json.dump(self.stats, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("journal")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--mode", choices=sorted(WEIGHTS), default="mixed")
    ap.add_argument("--stop", required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--pace", type=float, default=0)
    ap.add_argument("--max-entries", type=int, default=250)
    ap.add_argument("--max-bytes", type=int, default=48 * MiB)
    ap.add_argument("--large-max", type=int, default=8 * MiB)
    a = ap.parse_args()
    os.umask(0)
    w = Workload(a)
    try:
        w.run()
    except OSError as e:
        cur = w.cur and f"#{w.cur[0]} {w.cur[1]} {' '.join(w.cur[2])}"
        print(f"workload {a.root}: operation {cur} failed: {e!r}", file=sys.stderr, flush=True)
        w.write_stats(error=repr(e), failed_op=cur)
        sys.exit(3)
    w.write_stats()


if __name__ == "__main__":
    main()
