# SPDX-License-Identifier: MIT
"""What a workload's tree must look like, from its journal.

A workload (workload.py) works in one directory of a mount and keeps a
journal on local disk outside the region.  Before each operation that can
change what is stored it appends

    I <n> <op> <args...>

and once the operation returned successfully

    D <n>                     (written with fdatasync: the operation is committed)

After a crash the checker decides what became of the one operation that was
in flight, and appends `D <n>` (it happened) or `A <n>` (it did not).  So a
journal describes, at any moment, a committed state and at most one
operation in flight, whose outcome may be either.

Operations (paths relative to the workload's directory, no spaces):

    mkdir P MODE          rmdir P            symlink P TARGET
    create P SEED MODE    (an empty file, left open for write/flush/close)
    write P OFF LEN       (no effect on what is stored until a flush)
    flush P SIZE          (fsync: the size becomes SIZE)
    close P SIZE          (last close: the size becomes SIZE)
    append P SIZE         (open O_APPEND, write, close: size becomes SIZE)
    truncate P SIZE       (smaller or larger: larger reads as zeros)
    extend P OFF LEN      (open, write LEN bytes at OFF past the end, close:
                           the gap reads as zeros)
    rename OLD NEW        unlink P           link OLD NEW
    chmod P MODE          setxattr P NAME VALUE
    orphan P              (unlink while open: the name goes, the data stays
                           until the last close, `oclose P`)

File contents are generated: page i (4 KiB) of the file with seed s is
16 bytes of (s, i) followed by 4080 bytes derived from s, so a file's
expected bytes are known for every size, pages cannot be swapped unseen
and one file's bytes cannot pass for another's.  Ranges that must read as
zeros (a file grown by truncate or by a write past its end) are listed
with the file.
"""
import copy
import hashlib
import os
import stat
import struct

PAGE = 4096
_base = {}
_sha = {}


def _page_tail(seed):
    b = _base.get(seed)
    if b is None:
        b = hashlib.shake_128(struct.pack("<Q", seed)).digest(PAGE - 16)
        if len(_base) > 4096:
            _base.clear()
        _base[seed] = b
    return b


def content(seed, start, end):
    """Bytes [start, end) of the file with this seed."""
    if end <= start:
        return b""
    tail = _page_tail(seed)
    first, last = start // PAGE, (end - 1) // PAGE
    data = b"".join(struct.pack("<QQ", seed, i) + tail for i in range(first, last + 1))
    off = first * PAGE
    return data[start - off:end - off]


def file_bytes(seed, zeros, start, end):
    """Bytes [start, end) of a file: generated, but zero in the ranges of
    `zeros` ((start, end) pairs)."""
    b = content(seed, start, end)
    if not zeros:
        return b
    b = bytearray(b)
    for zs, ze in zeros:
        a, e = max(zs, start), min(ze, end)
        if a < e:
            b[a - start:e - start] = bytes(e - a)
    return bytes(b)


def content_sha(seed, size, zeros=()):
    key = (seed, size, tuple(zeros))
    h = _sha.get(key)
    if h is None:
        m = hashlib.sha256()
        for at in range(0, size, 1 << 20):
            m.update(file_bytes(seed, zeros, at, min(size, at + (1 << 20))))
        h = m.hexdigest()
        if len(_sha) > 100000:
            _sha.clear()
        _sha[key] = h
    return h


class Model:
    """The tree: path -> node; node is ("d", mode), ("l", target) or
    ("f", obj); objs[obj] = {"seed", "size", "zeros", "mode", "xattr"}.  Open files
    (created, not yet closed) are tracked so that a flush knows its object."""

    def __init__(self):
        self.nodes = {}
        self.objs = {}
        self.next_obj = 0

    def clone(self):
        m = Model()
        m.nodes = dict(self.nodes)
        m.objs = copy.deepcopy(self.objs)
        m.next_obj = self.next_obj
        return m

    # ---- queries ------------------------------------------------------------

    def children(self, d):
        pre = d + "/" if d else ""
        return [p for p in self.nodes if p.startswith(pre) and "/" not in p[len(pre):]]

    def dirs(self):
        return [p for p, n in self.nodes.items() if n[0] == "d"]

    def files(self):
        return [p for p, n in self.nodes.items() if n[0] == "f"]

    def nlink(self, obj):
        return sum(1 for n in self.nodes.values() if n[0] == "f" and n[1] == obj)

    def data_bytes(self):
        return sum(o["size"] for o in self.objs.values())

    def expected(self):
        """{path: description}, as describe_tree() gives for the real tree."""
        out = {}
        counts = {}
        for n in self.nodes.values():
            if n[0] == "f":
                counts[n[1]] = counts.get(n[1], 0) + 1
        for p, n in self.nodes.items():
            if n[0] == "d":
                out[p] = ("d", n[1])
            elif n[0] == "l":
                out[p] = ("l", n[1])
            else:
                o = self.objs[n[1]]
                out[p] = ("f", o["size"], content_sha(o["seed"], o["size"], o["zeros"]), o["mode"],
                          counts[n[1]], tuple(sorted(o["xattr"].items())))
        return out

    # ---- changes --------------------------------------------------------------

    def _subtree(self, p):
        pre = p + "/"
        return [q for q in self.nodes if q == p or q.startswith(pre)]

    def _drop_obj_if_unnamed(self, obj):
        if obj is not None and self.nlink(obj) == 0:
            self.objs.pop(obj, None)

    def apply(self, op, args):
        n = self.nodes
        if op == "mkdir":
            n[args[0]] = ("d", int(args[1], 8))
        elif op == "rmdir":
            del n[args[0]]
        elif op == "symlink":
            n[args[0]] = ("l", args[1])
        elif op == "create":
            obj = self.next_obj
            self.next_obj += 1
            self.objs[obj] = {"seed": int(args[1]), "size": 0, "zeros": [], "mode": int(args[2], 8),
                              "xattr": {}}
            n[args[0]] = ("f", obj)
        elif op in ("write", "oclose"):
            pass
        elif op in ("flush", "close", "append"):
            self.objs[n[args[0]][1]]["size"] = int(args[1])
        elif op == "truncate":
            o = self.objs[n[args[0]][1]]
            new = int(args[1])
            if new > o["size"]:
                o["zeros"] = o["zeros"] + [(o["size"], new)]
            else:
                o["zeros"] = [(a, min(b, new)) for a, b in o["zeros"] if a < new]
            o["size"] = new
        elif op == "extend":
            o = self.objs[n[args[0]][1]]
            off, ln = int(args[1]), int(args[2])
            if off > o["size"]:
                o["zeros"] = o["zeros"] + [(o["size"], off)]
            o["size"] = max(o["size"], off + ln)
        elif op == "unlink" or op == "orphan":
            node = n.pop(args[0])
            self._drop_obj_if_unnamed(node[1])
        elif op == "link":
            n[args[1]] = n[args[0]]
        elif op == "chmod":
            node = n[args[0]]
            if node[0] == "d":
                n[args[0]] = ("d", int(args[1], 8))
            else:
                self.objs[node[1]]["mode"] = int(args[1], 8)
        elif op == "setxattr":
            self.objs[n[args[0]][1]]["xattr"][args[1]] = args[2]
        elif op == "rename":
            old, new = args
            if old == new:
                return
            replaced = n.get(new)
            if replaced is not None:
                for q in self._subtree(new):
                    del n[q]
            moved = {}
            for q in self._subtree(old):
                moved[new + q[len(old):]] = n.pop(q)
            n.update(moved)
            if replaced is not None and replaced[0] == "f":
                self._drop_obj_if_unnamed(replaced[1])
        else:
            raise ValueError(f"unknown operation {op!r}")


class Journal:
    """A journal read back: the committed model, and the operation in
    flight (None, or (n, op, args)) with the model after it."""

    def __init__(self, path):
        self.path = path
        self.model = Model()
        self.inflight = None
        self.ops = 0
        self.last_op = None
        self.last_n = 0
        pending = None
        with open(path) as f:
            lines = f.read().split("\n")
        if lines and lines[-1] != "":
            lines = lines[:-1]          # a torn last line: it was never written
        for ln in lines:
            if not ln:
                continue
            w = ln.split(" ")
            if w[0] == "I":
                if pending is not None:
                    raise ValueError(f"{path}: operation {pending[0]} never resolved before {ln!r}")
                pending = (int(w[1]), w[2], w[3:])
                self.last_n = pending[0]
                self.last_op = pending[1]
            elif w[0] in ("D", "A"):
                if pending is None or int(w[1]) != pending[0]:
                    raise ValueError(f"{path}: {ln!r} does not match the operation in flight")
                if w[0] == "D":
                    self.model.apply(pending[1], pending[2])
                    self.ops += 1
                pending = None
            else:
                raise ValueError(f"{path}: bad line {ln!r}")
        self.inflight = pending

    def candidates(self):
        """[(label, Model)]: what the tree may be -- the committed state and,
        with an operation in flight, the state after it."""
        if self.inflight is None:
            return [("committed", self.model)]
        after = self.model.clone()
        after.apply(self.inflight[1], self.inflight[2])
        return [("without #%d %s" % (self.inflight[0], self.inflight[1]), self.model),
                ("with #%d %s" % (self.inflight[0], self.inflight[1]), after)]


def touched_paths(op, args):
    """Paths an operation may change (a directory stands for its subtree)."""
    if op in ("rename", "link"):
        return [args[0], args[1]]
    return [args[0]]


def ops_between(path, start_len, end_len):
    """Operations whose journal lines lie in bytes [start_len, end_len) of
    the journal, plus the one in flight at start_len: [(op, args)]."""
    with open(path, "rb") as f:
        data = f.read(end_len)
    out = []
    # the operation in flight at start_len, if any
    head = data[:start_len].decode().split("\n")
    pending = None
    for ln in head:
        w = ln.split(" ")
        if w[0] == "I" and len(w) >= 3:
            pending = (w[2], w[3:])
        elif w[0] in ("D", "A"):
            pending = None
    if pending:
        out.append(pending)
    for ln in data[start_len:].decode(errors="replace").split("\n"):
        w = ln.split(" ")
        if w[0] == "I" and len(w) >= 3:
            out.append((w[2], w[3:]))
    return out


# ---- the real tree ----------------------------------------------------------------

def describe_tree(root, read_timeout_check=None):
    """{path: description} of the tree under root (root excluded)."""
    out = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode))
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                m = hashlib.sha256()
                n = 0
                with open(p, "rb") as f:
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        m.update(b)
                        n += len(b)
                xa = {}
                for k in os.listxattr(p, follow_symlinks=False):
                    if k.startswith("user."):
                        xa[k] = os.getxattr(p, k, follow_symlinks=False).decode()
                out[rel] = ("f", n, m.hexdigest(), stat.S_IMODE(st.st_mode), st.st_nlink,
                            tuple(sorted(xa.items())))
                if n != st.st_size:
                    out[rel] = out[rel] + (f"st_size {st.st_size} but read {n} bytes",)
            else:
                out[rel] = ("?", stat.S_IFMT(st.st_mode))
    return out


def diff(expected, actual, objs_hint=None, limit=20):
    """Lines describing how actual differs from expected ([] when equal)."""
    out = []
    for p in sorted(set(expected) | set(actual)):
        e, a = expected.get(p), actual.get(p)
        if e == a:
            continue
        if e is None:
            out.append(f"  {p}: unexpected {fmt(a)}")
        elif a is None:
            out.append(f"  {p}: missing (expected {fmt(e)})")
        else:
            out.append(f"  {p}: expected {fmt(e)}, found {fmt(a)}")
        if len(out) >= limit:
            out.append("  ...")
            break
    return out


def fmt(d):
    if d[0] == "f":
        s = f"file size {d[1]} sha {d[2][:12]} mode {d[3]:o} nlink {d[4]}"
        if d[5]:
            s += f" xattr {dict(d[5])}"
        if len(d) > 6:
            s += f" ({d[6]})"
        return s
    if d[0] == "d":
        return f"dir mode {d[1]:o}"
    if d[0] == "l":
        return f"symlink -> {d[1]}"
    return repr(d)


def first_bad_offset(path, seed, size, zeros=()):
    """Where a file first differs from its expected content (diagnostics)."""
    try:
        with open(path, "rb") as f:
            at = 0
            while at < size:
                b = f.read(1 << 20)
                if not b:
                    return f"short read at {at}"
                want = file_bytes(seed, zeros, at, min(size, at + len(b)))
                if b != want:
                    i = next(k for k in range(len(b)) if k >= len(want) or b[k] != want[k])
                    pg = (at + i) // PAGE
                    got = b[i - i % PAGE:i - i % PAGE + 16] if i % PAGE < len(b) else b""
                    return (f"first difference at byte {at + i} (page {pg}); that page "
                            f"starts with {got.hex()}")
                at += len(b)
    except OSError as e:
        return repr(e)
    return "content matches; size or metadata differs"
