#!/usr/bin/env python3
"""Parses what Benchmarks/run-relay.sh collected and prints the side-by-side table; writes the JSON.

usage: report.py WORK_DIR JSON_OUT
WORK_DIR/settings holds KEY=VALUE lines; WORK_DIR/<server>/ (switchboard, coturn) holds, per server:
  facts          KEY=VALUE lines measured by the script (wall and CPU times, RSS samples, exit codes)
  uclient.out    turnutils_uclient's output
  blast_<run>.out, sink_<run>.out   turnblast's and sink's output for each throughput run (flat1.., fixed, and
                 t2flat1.. with THREADS2 relay threads)
A server whose folder is missing was skipped (ONLY=...).
"""
import json
import os
import re
import sys

SERVERS = ["switchboard", "coturn"]
LABEL = {"switchboard": "Switchboard", "coturn": "coturn"}


def kv(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out


def num(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        try:
            return float(text)
        except (TypeError, ValueError):
            return None


def read(path):
    return open(path, errors="replace").read() if os.path.exists(path) else ""


def parse_uclient(text):
    """The closing lines of turnutils_uclient (coturn 4.6.1), e.g.
    25: : start_mclient: tot_send_msgs=10000, tot_recv_msgs=10000
    25: : start_mclient: tot_send_bytes ~ 1720000, tot_recv_bytes ~ 1720000
    25: : Total transmit time is 25
    25: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
    25: : Average round trip delay 0.006500 ms; min = 0 ms, max = 20 ms
    25: : Average jitter 0.579600 ms; min = 0 ms, max = 20 ms"""
    r = {}
    m = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", text, re.M)
    if m:
        r["sent_msgs"], r["recv_msgs"] = int(m[-1][0]), int(m[-1][1])
    m = re.findall(r"start_mclient: tot_send_bytes ~ (\d+), tot_recv_bytes ~ (\d+)\s*$", text, re.M)
    if m:
        r["sent_bytes"], r["recv_bytes"] = int(m[-1][0]), int(m[-1][1])
    m = re.search(r"Total transmit time is (\d+)", text)
    if m:
        r["transmit_s"] = int(m.group(1))
    m = re.search(r"Total lost packets (\d+) \(([\d.]+)%\), total send dropped (\d+) \(([\d.]+)%\)", text)
    if m:
        r["lost"], r["lost_pct"] = int(m.group(1)), float(m.group(2))
        r["send_dropped"], r["send_dropped_pct"] = int(m.group(3)), float(m.group(4))
    m = re.search(r"Average round trip delay ([\d.]+) ms; min = (\d+) ms, max = (\d+) ms", text)
    if m:
        r["rtt_avg_ms"], r["rtt_min_ms"], r["rtt_max_ms"] = float(m.group(1)), int(m.group(2)), int(m.group(3))
    m = re.search(r"Average jitter ([\d.]+) ms; min = (\d+) ms, max = (\d+) ms", text)
    if m:
        r["jitter_avg_ms"] = float(m.group(1))
    errors = sorted(set(m.strip() for m in re.findall(r"(ERROR: .*|error \d{3} \(.*\)|recv: .*)", text)))
    if errors:
        r["errors"] = errors
    if r.get("transmit_s") and "recv_msgs" in r:
        r["recv_msgs_per_s"] = r["recv_msgs"] / r["transmit_s"]
        r["recv_bytes_per_s"] = r.get("recv_bytes", 0) / r["transmit_s"]
        r["sent_bytes_per_s"] = r.get("sent_bytes", 0) / r["transmit_s"]
    return r


def parse_line(text, tag):
    """BLAST clients= len= sent= err= wall_s= rate= cpu_s=  /  SINK rx= bytes= span_s= rate= drops="""
    m = re.findall(r"^%s (.*)$" % tag, text, re.M)
    if not m:
        return {}
    return {k: num(v) for k, v in re.findall(r"(\w+)=(\S+)", m[-1])}


def throughput(folder, run, facts, clk_tck):
    blast = parse_line(read(os.path.join(folder, "blast_%s.out" % run)), "BLAST")
    sink = parse_line(read(os.path.join(folder, "sink_%s.out" % run)), "SINK")
    r = {"blast": blast, "sink": sink, "turnblast_rc": num(facts.get("%s_rc" % run))}
    sent, rx, span = blast.get("sent"), sink.get("rx"), sink.get("span_s")
    if sent and rx is not None:
        r["loss_pct"] = 100.0 * (1 - rx / sent)
    if rx and span:
        r["relayed_pps"] = rx / span
    if blast.get("wall_s"):
        r["offered_pps"] = sent / blast["wall_s"]
    ticks, wall = num(facts.get("%s_cpu_ticks" % run)), num(facts.get("%s_wall_s" % run))
    if ticks is not None and wall:
        r["server_cpu_s"] = ticks / clk_tck
        r["server_cpu_pct_of_core"] = 100.0 * ticks / clk_tck / wall
        if rx:
            r["server_cpu_us_per_pkt"] = 1e6 * ticks / clk_tck / rx
    return r


def collect(work):
    settings = kv(os.path.join(work, "settings"))
    clk_tck = num(settings.get("CLK_TCK")) or 100
    servers = {}
    for name in SERVERS:
        folder = os.path.join(work, name)
        if not os.path.isdir(folder):
            continue
        facts = kv(os.path.join(folder, "facts"))
        s = {"command": facts.get("command"), "version": facts.get("version")}
        u = parse_uclient(read(os.path.join(folder, "uclient.out")))
        u["exit_code"] = num(facts.get("uclient_rc"))
        u["wall_s"] = num(facts.get("uclient_wall_s"))
        ticks = num(facts.get("uclient_cpu_ticks"))
        if ticks is not None:
            u["server_cpu_s"] = ticks / clk_tck
        s["uclient"] = u
        for prefix, key in (("flat", "flat"), ("t2flat", "flat_threads")):
            runs, i = [], 1
            while os.path.exists(os.path.join(folder, "blast_%s%d.out" % (prefix, i))):
                runs.append(throughput(folder, "%s%d" % (prefix, i), facts, clk_tck))
                i += 1
            s[key + "_runs"] = runs
            s[key] = max(runs, key=lambda r: r.get("relayed_pps") or 0) if runs else {}
        s["fixed"] = throughput(folder, "fixed", facts, clk_tck)
        before, held, n = num(facts.get("rss_before_kib")), num(facts.get("rss_with_kib")), num(facts.get("rss_allocs"))
        rss = {"before_kib": before, "with_kib": held, "after_kib": num(facts.get("rss_after_kib")),
               "allocations": n, "turnblast_rc": num(facts.get("rss_rc"))}
        if before is not None and held is not None and n:
            rss["per_allocation_kib"] = (held - before) / n
        s["rss"] = rss
        for mode in ("tcp", "tls"):
            u = parse_uclient(read(os.path.join(folder, "uclient_%s.out" % mode)))
            u["exit_code"] = num(facts.get("uclient_%s_rc" % mode))
            ticks, wall = num(facts.get("uclient_%s_cpu_ticks" % mode)), num(facts.get("uclient_%s_wall_s" % mode))
            if ticks is not None and wall:
                u["server_cpu_s"] = ticks / clk_tck
                u["server_cpu_pct_of_core"] = 100.0 * ticks / clk_tck / wall
                if u.get("recv_msgs"):
                    # Each message crosses the relay twice (to the echo peer and back).
                    u["server_cpu_us_per_msg"] = 1e6 * ticks / clk_tck / (2 * u["recv_msgs"])
            s["uclient_" + mode] = u
        servers[name] = s
    return settings, servers


def fmt(v, spec="{:,.0f}"):
    if v is None:
        return "-"
    return spec.format(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def main():
    work, out_json = sys.argv[1], sys.argv[2]
    settings, servers = collect(work)
    g = lambda name, *path: _get(servers.get(name), path)
    present = [n for n in SERVERS if n in servers]
    both = len(present) == 2
    rows = []  # (label, key path, format, ratio?)

    uflags = settings.get("UCLIENT_FLAGS", "")
    head_u = "uclient %s -n %s -m %s -l %s via echo peer" % (
        uflags, settings.get("MESSAGES"), settings.get("UCLIENTS"), settings.get("LEN"))
    rows += [
        (head_u, None, None, False),
        ("  exit code", ("uclient", "exit_code"), "{}", False),
        ("  messages sent", ("uclient", "sent_msgs"), "{:,}", True),
        ("  messages received", ("uclient", "recv_msgs"), "{:,}", True),
        ("  lost (%)", ("uclient", "lost_pct"), "{:.3f}", True),
        ("  avg RTT (ms, whole-ms samples)", ("uclient", "rtt_avg_ms"), "{:.4f}", True),
        ("  max RTT (ms)", ("uclient", "rtt_max_ms"), "{}", True),
        ("  avg jitter (ms)", ("uclient", "jitter_avg_ms"), "{:.4f}", True),
        ("  recv throughput (msg/s over transmit time)", ("uclient", "recv_msgs_per_s"), "{:,.0f}", True),
        ("  recv throughput (B/s)", ("uclient", "recv_bytes_per_s"), "{:,.0f}", True),
        ("  server CPU during run (s)", ("uclient", "server_cpu_s"), "{:.2f}", True),
    ]
    flat_title = "turnblast flat out, 1 relay thread, one core (RATE=0, best of %s)" % settings.get("FLAT_RUNS", "1")
    threads_title = "turnblast flat out, %s relay threads, every core (best of %s)" % (
        settings.get("THREADS2"), settings.get("FLAT_RUNS", "1"))
    for run, title in (("flat", flat_title), ("fixed", "turnblast at %s pps, 1 relay thread" % settings.get("RATE")),
                       ("flat_threads", threads_title)):
        rows += [
            ("%s, %s clients, %s B, %s s" % (title, settings.get("CLIENTS"), settings.get("LEN"), settings.get("SECS")),
             None, None, False),
            ("  offered (pkt/s)", (run, "offered_pps"), "{:,.0f}", True),
            ("  relayed (pkt/s = sink rx / span)", (run, "relayed_pps"), "{:,.0f}", True),
            ("  loss (%, 1 - rx/sent)", (run, "loss_pct"), "{:.3f}", True),
            ("  server CPU (% of one core)", (run, "server_cpu_pct_of_core"), "{:.0f}", True),
            ("  server CPU per relayed packet (us)", (run, "server_cpu_us_per_pkt"), "{:.2f}", True),
            ("  sink socket drops", (run, "sink", "drops"), "{:,}", False),
        ]
    rows += [
        ("resident memory, %s allocations held (turnblast)" % settings.get("ALLOCS"), None, None, False),
        ("  RSS before (KiB)", ("rss", "before_kib"), "{:,}", True),
        ("  RSS with allocations (KiB)", ("rss", "with_kib"), "{:,}", True),
        ("  RSS per allocation (KiB)", ("rss", "per_allocation_kib"), "{:.2f}", True),
    ]

    for mode, title in (("tcp", "TCP (-t)"), ("tls", "TLS (-t -S)")):
        rows += [
            ("uclient over %s -c -z 0 -n %s -m %s -l %s via echo peer" % (
                title, settings.get("MESSAGES"), settings.get("UCLIENTS"), settings.get("LEN")), None, None, False),
            ("  exit code", ("uclient_" + mode, "exit_code"), "{}", False),
            ("  messages received", ("uclient_" + mode, "recv_msgs"), "{:,}", True),
            ("  lost (%)", ("uclient_" + mode, "lost_pct"), "{:.3f}", True),
            ("  recv throughput (msg/s over transmit time)", ("uclient_" + mode, "recv_msgs_per_s"), "{:,.0f}", True),
            ("  server CPU (% of one core)", ("uclient_" + mode, "server_cpu_pct_of_core"), "{:.0f}", True),
            ("  server CPU per relayed message (us)", ("uclient_" + mode, "server_cpu_us_per_msg"), "{:.1f}", True),
        ]

    header = ["metric"] + [LABEL[n] for n in present] + (["Switchboard/coturn"] if both else [])
    table = [header]
    ratios = {}
    sections, current = [], None
    for row in rows:   # a section (heading and its rows) is printed only when some server has a figure in it
        if row[1] is None:
            current = [row]
            sections.append(current)
        else:
            current.append(row)
    rows = [r for sec in sections
            if any(g(n, *r[1]) is not None for r in sec[1:] for n in present) for r in sec]
    for label, path, spec, want_ratio in rows:
        if path is None:
            table.append([label] + [""] * (len(header) - 1))
            continue
        vals = [g(n, *path) for n in present]
        line = [label] + [fmt(v, spec) for v in vals]
        if both:
            r = ratio(vals[0], vals[1]) if want_ratio else None
            line.append(fmt(r, "{:.2f}x") if want_ratio else "")
            if want_ratio:
                ratios[".".join(path)] = r
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for n in present:
        print("%s: %s" % (LABEL[n], servers[n].get("version")))
        errs = servers[n]["uclient"].get("errors")
        if errs:
            print("%s: uclient said: %s" % (LABEL[n], "; ".join(errs)))
    result = {"settings": settings, "servers": servers, "ratios_switchboard_over_coturn": ratios}
    with open(out_json, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    print("\nJSON: %s" % out_json)


def _get(d, path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


if __name__ == "__main__":
    main()
