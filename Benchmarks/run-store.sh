#!/usr/bin/env bash
# Store benchmark: complete call setups/s and signal delivery p50/p99 for every store, in one run:
# memory, SQLite, PostgreSQL with one node, and PostgreSQL with two and three nodes (the load spread over them);
# plus what decides how far a cluster scales: PostgreSQL statements (= round trips), transactions and CPU per call
# setup, Switchboard CPU per setup, the NOTIFY lag p99, and from those a projection of setups/s for N nodes.
#
#   Benchmarks/run-store.sh
#   SMOKE=1 Benchmarks/run-store.sh     # a tiny run on the debug build (what CI runs)
#
# Environment (all optional): SWITCHBOARD_BIN (default .build/release/switchboard), SETUP_SECONDS (15),
# CONCURRENCY (12, split over the nodes), RATE (1000 signals/s, split), LATENCY_SECONDS (15), PAIRS (24, split),
# PORT (first port, 18600), DB_CORES (cores of the projected database host, 8), STORES (the stores to compare
# with memory: "sqlite postgres").
# The PostgreSQL cluster is a throwaway one (scripts/pg-cluster) with the production durability settings
# (fsync and synchronous_commit on) and pg_stat_statements. Results: a table on stdout and
# Benchmarks/results/store-DATE.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ "${SMOKE:-0}" == 1 ]]; then
  SWITCHBOARD_BIN="${SWITCHBOARD_BIN:-$(swift build --show-bin-path)/switchboard}"
  SETUP_SECONDS="${SETUP_SECONDS:-2}" CONCURRENCY="${CONCURRENCY:-6}" RATE="${RATE:-60}"
  LATENCY_SECONDS="${LATENCY_SECONDS:-2}" PAIRS="${PAIRS:-6}"
fi
BIN="${SWITCHBOARD_BIN:-.build/release/switchboard}"
SETUP_SECONDS="${SETUP_SECONDS:-15}"
CONCURRENCY="${CONCURRENCY:-12}"
RATE="${RATE:-1000}"
LATENCY_SECONDS="${LATENCY_SECONDS:-15}"
PAIRS="${PAIRS:-24}"
PORT="${PORT:-18600}"
DB_CORES="${DB_CORES:-8}"
LOAD="$ROOT/Benchmarks/signaling/load.mjs"
[[ -x "$BIN" ]] || { echo "build it first: swift build -c release --product switchboard" >&2; exit 2; }
command -v node >/dev/null || { echo "node (20+) is required" >&2; exit 2; }
command -v psql >/dev/null || { echo "psql is required (apt-get install postgresql-client)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchboard-store-bench.XXXXXX")"
chmod 755 "$WORK"
PIDS=()
stop_servers() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_servers
  scripts/pg-cluster stop "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=Benchmarks/lib.sh
source "$ROOT/Benchmarks/lib.sh"
make_certs "$WORK"
CA="$WORK/ca.pem"
SECRET="$(openssl rand -hex 32)"
eval "$(PG_OPTIONS="-c fsync=on -c synchronous_commit=on -c shared_preload_libraries=pg_stat_statements" \
  scripts/pg-cluster start "$WORK/pg")"
PG_URL="$SWITCHBOARD_TEST_DATABASE_URL"
pg() { psql "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"; }
postgres_pids() { pgrep -u "$(stat -c %U "$WORK/pg/data")" -f "postgres" | tr '\n' ' '; }

# start_nodes STORE N: N servers on PORT, PORT+1, ... sharing STORE.
start_nodes() {
  local store="$1" count="$2" i
  for ((i = 0; i < count; i++)); do
    "$BIN" serve --host 127.0.0.1 --port $((PORT + i)) --cert "$WORK/server.pem" --key "$WORK/server.key" \
      --token-secret "$SECRET" --rate-limit 0 --log-level warning --no-relay --no-media --no-web \
      --max-pending-per-address 1000000 --store "$store" >"$WORK/node$i.log" 2>&1 &
    PIDS+=($!)
  done
  for ((i = 0; i < count; i++)); do
    if ! node "$LOAD" wait --url "https://127.0.0.1:$((PORT + i))" --ca "$CA" --pid "${PIDS[$i]}" --timeout 60; then
      tail -n 30 "$WORK/node$i.log" >&2
      exit 1
    fi
  done
}

# load KIND N OUT ARGS...: run load.mjs KIND on every node at once (users prefixed per node), one JSON line each.
load() {
  local kind="$1" count="$2" out="$3" i
  shift 3
  local pids=()
  for ((i = 0; i < count; i++)); do
    node "$LOAD" "$kind" --url "https://127.0.0.1:$((PORT + i))" --ca "$CA" --secret "$SECRET" --prefix "n$i-" \
      "$@" >"$out.$i" 2>"$out.$i.log" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  cat "$out".[0-9] >"$out"
}

# lag_p99 N: the NOTIFY lag p99 (ms) over the nodes' /metrics histograms; "" without one.
lag_p99() {
  local i
  for ((i = 0; i < $1; i++)); do
    curl -s --cacert "$CA" "https://127.0.0.1:$((PORT + i))/metrics"
  done | python3 -c '
import sys, collections
buckets = collections.Counter()
for line in sys.stdin:
    if line.startswith("switchboard_store_notify_lag_seconds_bucket"):
        le = line.split("le=\"")[1].split("\"")[0]
        buckets[float("inf") if le == "+Inf" else float(le)] += float(line.rsplit(" ", 1)[1])
total = buckets.get(float("inf"), 0)
if total:
    for le in sorted(buckets):
        if buckets[le] >= 0.99 * total:
            print(round(le * 1000, 3) if le != float("inf") else "inf"); break
'
}

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
# run NAME STORE N [DATABASE]
run() {
  local name="$1" store="$2" count="$3" db="${4:-}"
  echo "== $name" >&2
  start_nodes "$store" "$count"
  local before_pg=0 before_sb before_stmt=0 before_xact=0
  if [[ -n "$db" ]]; then
    before_pg="$(cpu_ticks $(postgres_pids))"
    before_stmt="$(pg "$db" "SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")"
    before_xact="$(pg "$db" "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")"
  fi
  before_sb="$(cpu_ticks "${PIDS[@]}")"
  load setups "$count" "$WORK/$name-setups" --seconds "$SETUP_SECONDS" --concurrency $((CONCURRENCY / count))
  local after_sb after_pg=0 after_stmt=0 after_xact=0
  after_sb="$(cpu_ticks "${PIDS[@]}")"
  if [[ -n "$db" ]]; then
    after_pg="$(cpu_ticks $(postgres_pids))"
    after_stmt="$(pg "$db" "SELECT COALESCE(sum(calls), 0) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")"
    after_xact="$(pg "$db" "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")"
  fi
  load latency "$count" "$WORK/$name-latency" --rate $((RATE / count)) --seconds "$LATENCY_SECONDS" \
    --pairs $((PAIRS / count))
  local lag
  lag="$(lag_p99 "$count")"
  stop_servers
  python3 - "$name" "$count" "$WORK/$name-setups" "$WORK/$name-latency" "$((after_sb - before_sb))" \
    "$((after_pg - before_pg))" "$((after_stmt - before_stmt))" "$((after_xact - before_xact))" "${lag:-}" \
    "$(getconf CLK_TCK)" >>"$RESULTS" <<'PY'
import json, sys
name, nodes, setups, latency, sb, pg, stmts, xacts, lag, tck = sys.argv[1:]
s = [json.loads(l) for l in open(setups) if l.strip()]
l = [json.loads(l) for l in open(latency) if l.strip()]
completed = sum(x["completed"] for x in s)
ms = lambda ticks: 1000 * int(ticks) / int(tck) / completed if completed else None
print(json.dumps({
    "store": name, "nodes": int(nodes), "setupsPerSecond": round(sum(x["setupsPerSecond"] for x in s), 1),
    "setupErrors": sum(x["errors"] for x in s), "completed": completed,
    "p50ms": max(x["p50ms"] for x in l), "p99ms": max(x["p99ms"] for x in l),
    "delivered": sum(x.get("received", 0) for x in l), "sent": sum(x.get("sent", 0) for x in l),
    "switchboardCpuMsPerSetup": ms(sb), "postgresCpuMsPerSetup": ms(pg) if int(pg) else None,
    "statementsPerSetup": round(int(stmts) / completed, 2) if completed and int(stmts) else None,
    "transactionsPerSetup": round(int(xacts) / completed, 2) if completed and int(xacts) else None,
    "notifyLagP99ms": float(lag) if lag not in ("", "inf") else None,
}))
PY
}

# STORES picks the phases (memory always runs: it is the reference), e.g. STORES="sqlite" while tuning one store.
STORES="${STORES:-sqlite postgres}"
run memory memory 1
if [[ " $STORES " == *" sqlite "* ]]; then run sqlite "sqlite:$WORK/switchboard.sqlite" 1; fi
if [[ " $STORES " == *" postgres "* ]]; then
  for nodes in 1 2 3; do
    db="sbbench$nodes"
    pg "$PG_URL" "CREATE DATABASE $db"
    url="${PG_URL/\/postgres\?/\/$db?}"
    pg "$url" "CREATE EXTENSION pg_stat_statements"
    run "postgres-x$nodes" "$url" "$nodes" "$url"
  done
fi

mkdir -p Benchmarks/results
OUT="Benchmarks/results/store-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$RESULTS" "$OUT" "$DB_CORES" "$SETUP_SECONDS" "$RATE" "$LATENCY_SECONDS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out, db_cores = sys.argv[2], int(sys.argv[3])
json.dump({"rows": rows, "setupSeconds": float(sys.argv[4]), "rate": int(sys.argv[5]),
           "latencySeconds": float(sys.argv[6])}, open(out, "w"), indent=2)
memory = rows[0]["setupsPerSecond"] or 1
fmt = lambda v, unit="": "-" if v is None else (f"{v:,.2f}{unit}" if isinstance(v, float) else f"{v:,}{unit}")
print(f"{'store':<14} {'nodes':>5} {'setups/s':>9} {'vs memory':>9} {'p50 ms':>7} {'p99 ms':>7} {'delivered':>11} "
      f"{'stmts/setup':>11} {'xacts/setup':>11} {'pg CPU ms':>9} {'sb CPU ms':>9} {'NOTIFY p99':>10}")
for r in rows:
    print(f"{r['store']:<14} {r['nodes']:>5} {r['setupsPerSecond']:>9,.1f} {r['setupsPerSecond'] / memory:>8.2f}x "
          f"{fmt(r['p50ms']):>7} {fmt(r['p99ms']):>7} {str(r['delivered']) + '/' + str(r['sent']):>11} "
          f"{fmt(r['statementsPerSetup']):>11} {fmt(r['transactionsPerSetup']):>11} {fmt(r['postgresCpuMsPerSetup']):>9} "
          f"{fmt(r['switchboardCpuMsPerSetup']):>9} {fmt(r['notifyLagP99ms'], ' ms'):>10}")
pg1 = next((r for r in rows if r["store"] == "postgres-x1"), None)
if pg1 and pg1["postgresCpuMsPerSetup"] and pg1["switchboardCpuMsPerSetup"]:
    # A node on its own 2-core host is bounded by its own CPU per setup; the database host by PostgreSQL's.
    node_rate = 2 * 1000 / pg1["switchboardCpuMsPerSetup"]
    db_rate = db_cores * 1000 / pg1["postgresCpuMsPerSetup"]
    print(f"\nprojection (nodes on 2-core hosts, one {db_cores}-core database host; CPU-bound, before lock contention):")
    for n in (1, 2, 3, 4, 8, 16):
        print(f"  {n:>2} nodes: {min(n * node_rate, db_rate):>9,.0f} setups/s" + ("  (database-bound)" if n * node_rate > db_rate else ""))
print(f"\nwritten to {out}")
PY
