#!/usr/bin/env bash
# DTLS-SRTP benchmarks. First, SRTP: protect + unprotect throughput of 1,200-byte-payload RTP packets, both DTLS-SRTP profiles, through
# Switchboard's SRTPSession (Swift, release) and through a plain C loop over the same libsrtp, built and run in one
# go. Prints both side by side with the ratio Swift/C (goal: >= 0.9).
# Then DTLS: handshakes per second between two DTLSEngines in one process, and resident memory per established
# pair (two engines and their two SRTP sessions), directly and with the server side behind a DTLSListener.
#   Benchmarks/run-srtp.sh [PACKETS] [HANDSHAKES] [PAIRS]     (defaults 1,000,000 per profile, 500, 1,000)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKETS="${1:-1000000}"
HANDSHAKES="${2:-500}"
PAIRS="${3:-1000}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

gcc -O2 -o "$WORK/srtp_c_bench" "$ROOT/Benchmarks/srtp/srtp_c_bench.c" $(pkg-config --cflags --libs libsrtp2)
swift build -c release --package-path "$ROOT/Benchmarks/srtp" >&2
BIN_DIR="$(swift build -c release --package-path "$ROOT/Benchmarks/srtp" --show-bin-path)"
SWIFT_BIN="$BIN_DIR/srtp-bench"

# Interleaved, so both see the same machine conditions.
"$WORK/srtp_c_bench" "$PACKETS" > "$WORK/c1.json"
"$SWIFT_BIN" "$PACKETS" > "$WORK/s1.json"
"$WORK/srtp_c_bench" "$PACKETS" > "$WORK/c2.json"
"$SWIFT_BIN" "$PACKETS" > "$WORK/s2.json"

python3 - "$WORK" <<'PY'
import json, sys, os
work = sys.argv[1]
def load(names):
    rows = {}
    for name in names:
        for line in open(os.path.join(work, name)):
            r = json.loads(line)
            rows.setdefault(r["profile"], []).append(r)
    # best of the two runs each
    return {p: max(rs, key=lambda r: r["packetsPerSecond"]) for p, rs in rows.items()}
c = load(["c1.json", "c2.json"]); s = load(["s1.json", "s2.json"])
print("| profile | Swift SRTPSession pkt/s | Gbit/s | C loop pkt/s | Gbit/s | Swift/C |")
print("|---|---|---|---|---|---|")
for p in c:
    print(f"| {p} | {s[p]['packetsPerSecond']:,.0f} | {s[p]['gbitPerSecond']:.2f} | {c[p]['packetsPerSecond']:,.0f} | {c[p]['gbitPerSecond']:.2f} | {s[p]['packetsPerSecond']/c[p]['packetsPerSecond']:.2f}x |")
print("(protect + unprotect of one 1,212-byte RTP packet = one packet; Gbit/s of payload)")
PY

echo
"$BIN_DIR/dtls-bench" "$HANDSHAKES" "$PAIRS" > "$WORK/dtls.json"
python3 - "$WORK/dtls.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("DTLS 1.2 use_srtp handshakes (ECDSA P-256, in memory, both engines on one core): %s/s over %d"
      % (r["handshakesPerSecond"], r["handshakes"]))
print("resident memory per established pair (2 engines + 2 SRTP sessions), %d pairs held: %s KiB"
      % (r["heldPairs"], r["rssPerPairKiB"]))
print("through DTLSListener (cookie exchange: one more round trip; server engines share one SSL_CTX): %s/s, %s KiB per pair"
      % (r["listenerHandshakesPerSecond"], r["listenerRssPerPairKiB"]))
PY
