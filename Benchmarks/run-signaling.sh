#!/usr/bin/env bash
# Signaling-plane benchmark: Switchboard vs. the naive Node.js baseline (Benchmarks/baselines/node-sse-server.mjs),
# in one run, on one machine, over loopback HTTPS with a throwaway CA.
#
#   Benchmarks/run-signaling.sh
#   SMOKE=1 Benchmarks/run-signaling.sh     # a tiny run on the debug build (what CI runs)
#
# Environment (all optional):
#   SWITCHBOARD_BIN   server binary (default .build/release/switchboard, relative to the repository root)
#   STREAMS           concurrent SSE streams for the `streams` workload (default 10000)
#   STREAM_USERS      distinct users those streams belong to (default: $STREAMS, one device each)
#   H2_CONNECTIONS    HTTP/2 connections for the `h2streams` workload (default 100)
#   H2_PER_CONNECTION SSE streams multiplexed on each (default 100; Switchboard allows 100 per connection)
#   RATE              ICE candidates per second for `latency` (default 1000)
#   LATENCY_SECONDS   duration of `latency` (default 20)
#   PAIRS             answered calls carrying the `latency` traffic (default 50)
#   SETUP_SECONDS     duration of `setups` (default 15)
#   CONCURRENCY       concurrent workers for `setups` (default 16)
#   STORM_COUNT       connections per round of the `storm` workload (default 3000)
#   STORM_ROUNDS      rounds of it (default 4)
#   STORM_CAP         Switchboard's --max-connections during the storm (default 1000: most of each round refused)
#   PORT              Switchboard port (default 18443); BASELINE_PORT (default 18444)
# (Bash owns $SECONDS, so the durations are LATENCY_SECONDS and SETUP_SECONDS.)
#
# Results: a table on stdout and Benchmarks/results/signaling-DATE.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ "${SMOKE:-0}" == 1 ]]; then
  # A tiny run on the debug build, as CI runs it so the script cannot rot (figures mean nothing).
  SWITCHBOARD_BIN="${SWITCHBOARD_BIN:-$(swift build --show-bin-path)/switchboard}"
  STREAMS="${STREAMS:-50}" H2_CONNECTIONS="${H2_CONNECTIONS:-2}" H2_PER_CONNECTION="${H2_PER_CONNECTION:-10}" RATE="${RATE:-50}" LATENCY_SECONDS="${LATENCY_SECONDS:-2}" PAIRS="${PAIRS:-2}"
  SETUP_SECONDS="${SETUP_SECONDS:-2}" CONCURRENCY="${CONCURRENCY:-2}"
  STORM_COUNT="${STORM_COUNT:-100}" STORM_ROUNDS="${STORM_ROUNDS:-1}" STORM_CAP="${STORM_CAP:-50}"
fi
BIN="${SWITCHBOARD_BIN:-.build/release/switchboard}"
STREAMS="${STREAMS:-10000}"
STREAM_USERS="${STREAM_USERS:-$STREAMS}"
H2_CONNECTIONS="${H2_CONNECTIONS:-100}"
H2_PER_CONNECTION="${H2_PER_CONNECTION:-100}"
RATE="${RATE:-1000}"
LATENCY_SECONDS="${LATENCY_SECONDS:-20}"
PAIRS="${PAIRS:-50}"
SETUP_SECONDS="${SETUP_SECONDS:-15}"
CONCURRENCY="${CONCURRENCY:-16}"
STORM_COUNT="${STORM_COUNT:-3000}"
STORM_ROUNDS="${STORM_ROUNDS:-4}"
STORM_CAP="${STORM_CAP:-1000}"
PORT="${PORT:-18443}"
BASELINE_PORT="${BASELINE_PORT:-18444}"
HOST=127.0.0.1
LOAD="$ROOT/Benchmarks/signaling/load.mjs"
BASELINE="$ROOT/Benchmarks/baselines/node-sse-server.mjs"

if [[ ! -x "$BIN" ]]; then
  echo "build it first: swift build -c release --product switchboard" >&2
  exit 2
fi
command -v node >/dev/null || { echo "node (20+) is required" >&2; exit 2; }
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 2; }

# ---- file descriptors: every stream is a socket in the client and in the server ---------------------------------
WANT_FDS=65536
if ! ulimit -n "$WANT_FDS" 2>/dev/null; then
  hard="$(ulimit -Hn)"
  if [[ "$hard" != unlimited ]]; then ulimit -n "$hard"; fi
  echo "warning: could not raise the open-file limit to $WANT_FDS; using $(ulimit -n) (hard limit)" >&2
fi
if [[ "$(ulimit -n)" != unlimited && "$(ulimit -n)" -lt $((STREAMS + 1024)) ]]; then
  echo "warning: open-file limit $(ulimit -n) is below STREAMS+1024; some streams will fail" >&2
fi

# ---- cleanup ----------------------------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchboard-bench.XXXXXX")"
SERVER_PID=""
CLIENT_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() {
  if [[ -n "$CLIENT_PID" ]]; then kill "$CLIENT_PID" 2>/dev/null || true; fi
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- throwaway CA and server certificate for 127.0.0.1 ------------------------------------------------------------
# shellcheck source=Benchmarks/lib.sh
source "$ROOT/Benchmarks/lib.sh"
make_certs "$WORK"
CA="$WORK/ca.pem"
CERT="$WORK/server.pem"
KEY="$WORK/server.key"
SECRET="$(openssl rand -hex 32)"

# ---- helpers -------------------------------------------------------------------------------------------------------
# client ARGS...: run load.mjs in the background and wait for it, so that a signal interrupts the script at once
# (the EXIT trap then kills the client and the server).
client() {
  node "$LOAD" "$@" &
  CLIENT_PID=$!
  local rc=0
  wait "$CLIENT_PID" || rc=$?
  CLIENT_PID=""
  return "$rc"
}

# wait_ready URL LOG: until the server completes a TLS handshake (or dies / 60 s pass).
wait_ready() {
  if ! client wait --url "$1" --ca "$CA" --pid "$SERVER_PID" --timeout 60; then
    echo "server did not come up; its log:" >&2
    tail -n 40 "$2" >&2
    exit 1
  fi
}

# run NAME OUTFILE ARGS...: one workload; its JSON goes to OUTFILE ("null" if it failed).
run() {
  local name="$1" out="$2"
  shift 2
  echo "== $name" >&2
  local rc=0
  client "$@" --ca "$CA" --secret "$SECRET" >"$out.tmp" || rc=$?
  if [[ $rc -eq 0 ]]; then
    tail -n 1 "$out.tmp" >"$out"
    echo "   $(cat "$out")" >&2
  else
    echo "   $name failed (exit $rc)" >&2
    echo null >"$out"
  fi
  rm -f "$out.tmp"
}

# ---- Switchboard ---------------------------------------------------------------------------------------------------
SB_URL="https://$HOST:$PORT"
echo "== starting switchboard ($BIN) on $SB_URL" >&2
# The signaling plane alone: no TURN relay (it would need a shared secret) and no secure relay's media port. Every
# client connection comes from one address, hundreds of handshakes at a time: the per-address pending cap is lifted
# (the connection deadlines stay at their defaults).
"$BIN" serve --host "$HOST" --port "$PORT" --cert "$CERT" --key "$KEY" --token-secret "$SECRET" \
  --rate-limit 0 --log-level warning --no-relay --no-media --max-pending-per-address 1000000 \
  --store "sqlite:$WORK/switchboard.sqlite" >"$WORK/switchboard.log" 2>&1 &
SERVER_PID=$!
wait_ready "$SB_URL" "$WORK/switchboard.log"
grep -m1 'https://' "$WORK/switchboard.log" >&2 || true

run "switchboard streams ($STREAMS)" "$WORK/sb-streams.json" streams --url "$SB_URL" \
  --count "$STREAMS" --users "$STREAM_USERS" --pid "$SERVER_PID"
sleep 2 # let the server reap the closed streams
run "switchboard latency ($RATE/s, ${LATENCY_SECONDS}s)" "$WORK/sb-latency.json" latency --url "$SB_URL" \
  --rate "$RATE" --seconds "$LATENCY_SECONDS" --pairs "$PAIRS"
run "switchboard setups (${SETUP_SECONDS}s x $CONCURRENCY)" "$WORK/sb-setups.json" setups --url "$SB_URL" \
  --seconds "$SETUP_SECONDS" --concurrency "$CONCURRENCY"
kill -0 "$SERVER_PID" 2>/dev/null || { echo "switchboard died during the run; its log:" >&2; tail -n 40 "$WORK/switchboard.log" >&2; }
stop_server

# Streams over HTTP/2 against a fresh server (the RSS a process has grown to does not come back: a second workload
# on the same process would look cheaper than it is).
"$BIN" serve --host "$HOST" --port "$PORT" --cert "$CERT" --key "$KEY" --token-secret "$SECRET" \
  --rate-limit 0 --log-level warning --no-relay --no-media --max-pending-per-address 1000000 \
  --store "sqlite:$WORK/switchboard-h2.sqlite" >"$WORK/switchboard-h2.log" 2>&1 &
SERVER_PID=$!
wait_ready "$SB_URL" "$WORK/switchboard-h2.log"
run "switchboard h2streams ($H2_CONNECTIONS x $H2_PER_CONNECTION)" "$WORK/sb-h2streams.json" h2streams --url "$SB_URL" \
  --connections "$H2_CONNECTIONS" --per-connection "$H2_PER_CONNECTION" --pid "$SERVER_PID"
stop_server

# A connection storm against a fresh server whose connection cap is below the storm: accepted and refused per second,
# and RSS before, at the peak and after (does the memory come back?).
echo "== starting switchboard for the storm (--max-connections $STORM_CAP)" >&2
"$BIN" serve --host "$HOST" --port "$PORT" --cert "$CERT" --key "$KEY" --token-secret "$SECRET" \
  --rate-limit 0 --log-level warning --no-relay --no-media --no-web --max-connections "$STORM_CAP" \
  --max-pending-per-address 1000000 --store "sqlite:$WORK/switchboard-storm.sqlite" >"$WORK/switchboard-storm.log" 2>&1 &
SERVER_PID=$!
wait_ready "$SB_URL" "$WORK/switchboard-storm.log"
run "switchboard storm (${STORM_ROUNDS} x $STORM_COUNT, cap $STORM_CAP)" "$WORK/sb-storm.json" storm --url "$SB_URL" \
  --count "$STORM_COUNT" --rounds "$STORM_ROUNDS" --pid "$SERVER_PID" --settle 20
stop_server

# ---- Node baseline ---------------------------------------------------------------------------------------------------
BASE_URL="https://$HOST:$BASELINE_PORT"
echo "== starting node baseline on $BASE_URL" >&2
node "$BASELINE" --host "$HOST" --port "$BASELINE_PORT" --cert "$CERT" --key "$KEY" --secret "$SECRET" \
  >"$WORK/baseline.log" 2>&1 &
SERVER_PID=$!
wait_ready "$BASE_URL" "$WORK/baseline.log"

run "baseline streams ($STREAMS)" "$WORK/base-streams.json" streams --url "$BASE_URL" \
  --count "$STREAMS" --users "$STREAM_USERS" --pid "$SERVER_PID"
sleep 2
run "baseline latency ($RATE/s, ${LATENCY_SECONDS}s)" "$WORK/base-latency.json" latency --url "$BASE_URL" \
  --rate "$RATE" --seconds "$LATENCY_SECONDS" --pairs "$PAIRS"
stop_server
# Node's HTTP/2 server with the same handler.
node "$BASELINE" --host "$HOST" --port "$BASELINE_PORT" --cert "$CERT" --key "$KEY" --secret "$SECRET" --http2 \
  >"$WORK/baseline-h2.log" 2>&1 &
SERVER_PID=$!
wait_ready "$BASE_URL" "$WORK/baseline-h2.log"
run "baseline h2streams ($H2_CONNECTIONS x $H2_PER_CONNECTION)" "$WORK/base-h2streams.json" h2streams \
  --url "$BASE_URL" --connections "$H2_CONNECTIONS" --per-connection "$H2_PER_CONNECTION" --pid "$SERVER_PID"
stop_server
# The baseline has no cap: every connection of the storm is accepted.
node "$BASELINE" --host "$HOST" --port "$BASELINE_PORT" --cert "$CERT" --key "$KEY" --secret "$SECRET" \
  >"$WORK/baseline-storm.log" 2>&1 &
SERVER_PID=$!
wait_ready "$BASE_URL" "$WORK/baseline-storm.log"
run "baseline storm (${STORM_ROUNDS} x $STORM_COUNT)" "$WORK/base-storm.json" storm --url "$BASE_URL" \
  --count "$STORM_COUNT" --rounds "$STORM_ROUNDS" --pid "$SERVER_PID" --settle 20
stop_server

# ---- report ----------------------------------------------------------------------------------------------------------
mkdir -p "$ROOT/Benchmarks/results"
DATE="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/Benchmarks/results/signaling-$DATE.json"
export WORK OUT STREAMS STREAM_USERS H2_CONNECTIONS H2_PER_CONNECTION RATE LATENCY_SECONDS PAIRS SETUP_SECONDS CONCURRENCY BIN DATE STORM_COUNT STORM_ROUNDS \
  STORM_CAP
node --input-type=module -e '
import fs from "node:fs";
import os from "node:os";
const e = process.env;
const read = (n) => JSON.parse(fs.readFileSync(`${e.WORK}/${n}.json`, "utf8"));
const result = {
  date: e.DATE,
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
             kernel: os.release(), node: process.version },
  config: { streams: +e.STREAMS, streamUsers: +e.STREAM_USERS, h2Connections: +e.H2_CONNECTIONS,
            h2PerConnection: +e.H2_PER_CONNECTION, rate: +e.RATE, latencySeconds: +e.LATENCY_SECONDS,
            pairs: +e.PAIRS, setupSeconds: +e.SETUP_SECONDS, concurrency: +e.CONCURRENCY, switchboardBin: e.BIN,
            stormCount: +e.STORM_COUNT, stormRounds: +e.STORM_ROUNDS, stormCap: +e.STORM_CAP },
  switchboard: { streams: read("sb-streams"), h2streams: read("sb-h2streams"), latency: read("sb-latency"), setups: read("sb-setups"),
                 storm: read("sb-storm") },
  baseline: { name: "node-sse-server.mjs (seed design; --http2 for h2streams)", streams: read("base-streams"),
              h2streams: read("base-h2streams"), latency: read("base-latency"),
              storm: read("base-storm") },
};
fs.writeFileSync(e.OUT, JSON.stringify(result, null, 2) + "\n");

const get = (o, k) => (o == null || o[k] == null ? null : o[k]);
const fmt = (v) => (v == null ? "n/a" : Number.isInteger(v) ? String(v) : v.toFixed(2));
const ratio = (a, b) => (a == null || b == null || b === 0 ? "n/a" : (a / b).toFixed(2) + "x");
const S = result.switchboard, B = result.baseline;
const rows = [
  ["streams held (of " + e.STREAMS + ")", get(S.streams, "held"), get(B.streams, "held")],
  ["streams failed", get(S.streams, "failed"), get(B.streams, "failed")],
  ["RSS per stream (KiB)", get(S.streams, "rssPerStreamKiB"), get(B.streams, "rssPerStreamKiB")],
  ["RSS with streams (MiB)", get(S.streams, "rssMiB"), get(B.streams, "rssMiB")],
  ["HTTP/2 streams held (" + e.H2_CONNECTIONS + " conn x " + e.H2_PER_CONNECTION + ")", get(S.h2streams, "held"),
   get(B.h2streams, "held")],
  ["HTTP/2 RSS per stream (KiB)", get(S.h2streams, "rssPerStreamKiB"), get(B.h2streams, "rssPerStreamKiB")],
  ["HTTP/2 RSS with streams (MiB)", get(S.h2streams, "rssMiB"), get(B.h2streams, "rssMiB")],
  ["signal latency p50 (ms) @" + e.RATE + "/s", get(S.latency, "p50ms"), get(B.latency, "p50ms")],
  ["signal latency p99 (ms)", get(S.latency, "p99ms"), get(B.latency, "p99ms")],
  ["signals delivered / sent", S.latency && `${S.latency.received}/${S.latency.sent}`,
   B.latency && `${B.latency.received}/${B.latency.sent}`],
  ["call setups/s (" + e.CONCURRENCY + " workers)", get(S.setups, "setupsPerSecond"), null],
  ["call setup p99 (ms)", get(S.setups, "p99ms"), null],
  ["storm: connections accepted/s", get(S.storm, "acceptedPerSecond"), get(B.storm, "acceptedPerSecond")],
  ["storm: connections refused/s (sb cap " + e.STORM_CAP + ")", get(S.storm, "refusedPerSecond"),
   get(B.storm, "refusedPerSecond")],
  ["storm: accepted / refused", S.storm && `${S.storm.accepted}/${S.storm.refused}`,
   B.storm && `${B.storm.accepted}/${B.storm.refused}`],
  ["storm: RSS before (MiB)", get(S.storm, "rssBeforeMiB"), get(B.storm, "rssBeforeMiB")],
  ["storm: RSS at peak (MiB)", get(S.storm, "rssPeakMiB"), get(B.storm, "rssPeakMiB")],
  ["storm: RSS after (MiB)", get(S.storm, "rssAfterMiB"), get(B.storm, "rssAfterMiB")],
];
const table = [["metric", "switchboard", "node baseline", "ratio (sb/node)"]];
for (const [name, a, b] of rows) {
  const r = typeof a === "string" || typeof b === "string" ? "n/a" : ratio(a, b);
  table.push([name, typeof a === "string" ? a : fmt(a), typeof b === "string" ? b : fmt(b), r]);
}
const w = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
const line = (r) => "| " + r.map((c, i) => c.padEnd(w[i])).join(" | ") + " |";
console.log(line(table[0]));
console.log("|" + w.map((n) => "-".repeat(n + 2)).join("|") + "|");
for (const r of table.slice(1)) console.log(line(r));
console.log("\nresults: " + e.OUT);
'
