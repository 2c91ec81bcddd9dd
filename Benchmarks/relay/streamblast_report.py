#!/usr/bin/env python3
"""Prints the side-by-side table of run-relay.sh's streamblast phase (TURN over TCP and TLS, flat out), in
report.py's layout, and optionally writes its figures as JSON.

usage: streamblast_report.py WORK_DIR [JSON_OUT]
WORK_DIR/<server>/blast_sb_<tcp|tls><clients>_<run>.out and sink_sb_....out hold streamblast's and sink's lines,
WORK_DIR/<server>/facts the server's CPU ticks and wall time per run (keys sb_..._cpu_ticks, _wall_s, _rc).
Prints nothing when the phase did not run. The best run (relayed pkt/s) of each mode and client count is shown.
"""
import glob
import json
import os
import re
import sys

import report as R


def main():
    work = sys.argv[1]
    settings = R.kv(os.path.join(work, "settings"))
    clk = R.num(settings.get("CLK_TCK")) or 100
    names = [n for n in R.SERVERS if os.path.isdir(os.path.join(work, n))]
    runs = {}  # (mode, clients) -> {server: [run names]}
    for n in names:
        for path in glob.glob(os.path.join(work, n, "blast_sb_*.out")):
            m = re.match(r"blast_(sb_(tcp|tls)(\d+)_(\d+))\.out$", os.path.basename(path))
            if m:
                runs.setdefault((m.group(2), int(m.group(3))), {}).setdefault(n, []).append(m.group(1))
    if not runs:
        return
    two = len(names) == 2
    table = [["metric"] + [R.LABEL[n] for n in names] + (["Switchboard/coturn"] if two else [])]
    result = {}
    for mode, clients in sorted(runs):
        per = runs[(mode, clients)]
        table.append(["streamblast over %s flat out, 1 relay thread, %d clients, %s B, %s s (best of %s)" % (
            mode.upper(), clients, settings.get("LEN"), settings.get("SECS"), settings.get("FLAT_RUNS"))]
            + [""] * (len(table[0]) - 1))
        best = []
        for n in names:
            folder, facts = os.path.join(work, n), R.kv(os.path.join(work, n, "facts"))
            done = [R.throughput(folder, run, facts, clk) for run in sorted(per.get(n, []))]
            best.append(max(done, key=lambda r: r.get("relayed_pps") or 0) if done else {})
            result.setdefault(n, {})["%s_%d" % (mode, clients)] = {"best": best[-1], "runs": done}
        for label, key, spec in (("offered (pkt/s)", "offered_pps", "{:,.0f}"),
                                 ("relayed (pkt/s = sink rx / span)", "relayed_pps", "{:,.0f}"),
                                 ("loss (%, 1 - rx/sent)", "loss_pct", "{:.3f}"),
                                 ("server CPU (% of one core)", "server_cpu_pct_of_core", "{:.0f}"),
                                 ("server CPU per relayed packet (us)", "server_cpu_us_per_pkt", "{:.2f}")):
            vals = [b.get(key) for b in best]
            table.append(["  " + label] + [R.fmt(v, spec) for v in vals]
                         + ([R.fmt(R.ratio(vals[0], vals[1]), "{:.2f}x")] if two else []))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print()
    for i, row in enumerate(table):
        print("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
        print("\nJSON: %s" % sys.argv[2])


if __name__ == "__main__":
    main()
