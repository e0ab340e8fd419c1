#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Summarise bench/fuse_bench.sh results.

    fuse_bench_report.py RESULTS.tsv [TRIALS]

RESULTS.tsv: one measurement a line, "metric<TAB>fs<TAB>rep<TAB>value".
Prints the median over repetitions per metric and filesystem, the ratios
shmfs/passthrough_ll and shmfs/tmpfs, the goals of issue 3 next to them
(met/missed), and the individual runs.
"""
import statistics
import sys
from collections import defaultdict

FS = ["tmpfs", "passthrough_ll", "shmfs"]

# metric, label, unit, goal vs passthrough_ll, goal vs tmpfs (None = no goal)
METRICS = [
    ("seqwrite", "seq write 1 MiB", "MiB/s", 2.0, 0.5),
    ("seqread", "seq read 1 MiB", "MiB/s", 2.0, 0.5),
    ("randread", "rand read 4 KiB", "IOPS", 1.2, None),
    ("randwrite", "rand write 4 KiB", "IOPS", 1.2, None),
    ("create", "create", "files/s", 1.5, None),
    ("stat", "stat", "files/s", 5.0, None),
    ("statcold", "stat, cold (info)", "files/s", None, None),
    ("unlink", "unlink", "files/s", 1.5, None),
]

VIS = [
    ("vis_ns_p50", "create on A -> seen on B, p50", "us"),
    ("vis_ns_p99", "create on A -> seen on B, p99", "us"),
    ("vis_ns_max", "create on A -> seen on B, max", "us"),
    ("vis_data_p50", "close on A -> new bytes on B, p50", "us"),
    ("vis_data_p99", "close on A -> new bytes on B, p99", "us"),
    ("vis_data_max", "close on A -> new bytes on B, max", "us"),
]


def fmt(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main():
    data = defaultdict(list)  # (metric, fs) -> [(rep, value)]
    with open(sys.argv[1]) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            metric, fs, rep, value = parts
            data[(metric, fs)].append((int(rep), float(value)))
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 0

    def med(metric, fs):
        vals = [v for _, v in data.get((metric, fs), [])]
        return statistics.median(vals) if vals else None

    rows = []
    verdicts = []
    for metric, label, unit, goal_pt, goal_tmp in METRICS:
        t, p, s = (med(metric, fs) for fs in FS)
        if t is None and p is None and s is None:
            continue
        r_pt = s / p if s is not None and p else None
        r_tmp = s / t if s is not None and t else None
        goals, status = [], []
        if goal_pt is not None:
            goals.append(f">={goal_pt:g}x pt")
            if r_pt is not None:
                status.append("met" if r_pt >= goal_pt else "MISSED")
        if goal_tmp is not None:
            goals.append(f">={goal_tmp:g}x tmpfs")
            if r_tmp is not None:
                status.append("met" if r_tmp >= goal_tmp else "MISSED")
        g = ", ".join(goals) or "-"
        st = "/".join(status) or "-"
        rows.append([label, unit, fmt(t), fmt(p), fmt(s),
                     f"{r_pt:.2f}x" if r_pt is not None else "-",
                     f"{r_tmp:.2f}x" if r_tmp is not None else "-", g, st])
        if status:
            verdicts.append((label, "MISSED" not in status))

    head = ["measurement", "unit", "tmpfs", "passthrough_ll", "shmfs", "shmfs/pt",
            "shmfs/tmpfs", "goal (issue 3)", "status"]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]

    def line(r):
        out = []
        for i, c in enumerate(r):
            out.append(str(c).ljust(widths[i]) if i in (0, 1, 7, 8) else str(c).rjust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(head))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))

    # visibility (shmfs only, two mounts = two hosts)
    vis_rows = []
    for metric, label, unit in VIS:
        v = med(metric, "shmfs")
        if v is None:
            continue
        goal, status = "-", "-"
        if metric == "vis_ns_p99":
            goal = "<= 100 ms (issue 3, item 4)"
            status = "met" if v <= 100000 else "MISSED"
            verdicts.append(("namespace visibility p99", v <= 100000))
        vis_rows.append((label, unit, fmt(v), goal, status))
    first = [v for _, v in data.get(("vis_data_firstopen", "shmfs"), [])]
    if vis_rows:
        print()
        print("cross-mount visibility, shmfs (two mounts of one region; median over runs)")
        w0 = max(len(r[0]) for r in vis_rows)
        for label, unit, v, goal, status in vis_rows:
            print(f"  {label.ljust(w0)}  {v.rjust(8)} {unit}   {goal}  {status}")
        if first and trials:
            ok = all(f >= trials for f in first)
            verdicts.append(("close-to-open on first open", ok))
            runs = ", ".join(f"{int(f)}/{trials}" for f in first)
            print(f"  {'first open on B saw the new bytes'.ljust(w0)}  {runs}   "
                  f"all (close-to-open)  {'met' if ok else 'MISSED'}")

    print()
    print("individual runs (rep 1, 2, 3 ...)")
    for metric, label, unit, *_ in METRICS:
        for fs in FS:
            vals = [v for _, v in sorted(data.get((metric, fs), []))]
            if vals:
                print(f"  {label:<18} {fs:<15} " + "  ".join(fmt(v) for v in vals))
    for metric, label, unit in VIS:
        vals = [v for _, v in sorted(data.get((metric, "shmfs"), []))]
        if vals:
            print(f"  {label:<34} shmfs  " + "  ".join(fmt(v) for v in vals) + f" {unit}")

    print()
    met = [l for l, ok in verdicts if ok]
    missed = [l for l, ok in verdicts if not ok]
    print(f"goals met ({len(met)}): " + (", ".join(met) or "none"))
    print(f"goals missed ({len(missed)}): " + (", ".join(missed) or "none"))


if __name__ == "__main__":
    main()
