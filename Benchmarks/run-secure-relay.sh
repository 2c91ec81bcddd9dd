#!/usr/bin/env bash
# Secure-relay benchmark: media packets/s forwarded through Switchboard's secure relay (DTLS-SRTP terminated on both
# legs: unprotect on one, protect on the other) against (a) the C ceiling, a libsrtp protect + unprotect loop over
# the same 1,200-byte-payload RTP packets, and (b) rtpengine (Debian's rtpengine-daemon, userspace, one worker
# thread) re-encrypting SRTP to SRTP (SDES keys on both legs), both profiles, in one run; then the latency added per
# hop (p50/p99) at half of saturation, and memory per two-leg call. Servers on core 0, the load tool on core 1.
# Prints a table with the ratios and writes Benchmarks/results/secure-relay-DATE.json.
#
#   Benchmarks/run-secure-relay.sh            # builds switchboard (release) unless SWITCHBOARD_BIN is set
#   SMOKE=1 Benchmarks/run-secure-relay.sh    # tiny run on the debug build (what CI runs, so the script cannot rot)
#   env: PACKETS=300000 CALLS=100 CAPACITY_RATE=20000 NO_RTPENGINE=1
# Needs: gcc, libssl-dev, libsrtp2-dev, pkg-config, python3, taskset, openssl; rtpengine-daemon (installed here when
# missing and run as root).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "${SMOKE:-0}" = 1 ]; then
    PACKETS="${PACKETS:-3000}" CALLS="${CALLS:-3}" CAPACITY_RATE="${CAPACITY_RATE:-2000}"
    SWITCHBOARD_BIN="${SWITCHBOARD_BIN:-$(swift build --show-bin-path)/switchboard}"
    [ -x "$SWITCHBOARD_BIN" ] || swift build --product switchboard
fi
PACKETS="${PACKETS:-300000}"
CALLS="${CALLS:-100}"
CAPACITY_RATE="${CAPACITY_RATE:-20000}"
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
    swift build -c release --product switchboard >&2
    SWITCHBOARD_BIN="$(swift build -c release --show-bin-path)/switchboard"
fi
extra=()
if [ -n "${NO_RTPENGINE:-}" ]; then
    extra+=(--no-rtpengine)
elif ! command -v rtpengine >/dev/null 2>&1; then
    scripts/deps.sh rtpengine-daemon
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -o "$WORK/srtp_load" Benchmarks/secure-relay/srtp_load.c $(pkg-config --cflags --libs libsrtp2 openssl) -lpthread
gcc -O2 -o "$WORK/srtp_c_bench" Benchmarks/srtp/srtp_c_bench.c $(pkg-config --cflags --libs libsrtp2)
exec python3 Benchmarks/secure-relay/bench.py --switchboard "$SWITCHBOARD_BIN" --load "$WORK/srtp_load" \
    --ceiling "$WORK/srtp_c_bench" --packets "$PACKETS" --calls "$CALLS" --capacity-rate "$CAPACITY_RATE" \
    --workdir "$WORK" --results "$ROOT/Benchmarks/results" "${extra[@]}"
