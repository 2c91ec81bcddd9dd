#!/usr/bin/env bash
# TURN relay benchmark: the same load against Switchboard's relay and against coturn's turnserver (started with
# equivalent settings), one after the other in one run, on 127.0.0.1 only. Prints a side-by-side table with the
# ratio Switchboard/coturn and writes Benchmarks/results/relay-DATE.json (raw logs in Benchmarks/results/relay-DATE/).
#   (i)   interop: turnutils_uclient through an echo peer (turnutils_peer), long-term credentials alice/secret,
#         realm example.org: messages sent/received, loss, RTT, throughput
#   (ii)  throughput: turnblast -> relay -> sink (../shared/tools/turn-load), flat out and at RATE pkt/s:
#         relayed pkt/s = sink rx / span, loss = 1 - rx/sent, server CPU (and per relayed packet)
#   (ii') throughput2: flat out again with THREADS2 relay threads each (--relay-threads), the server on every core
#         (sharing them with the load tools: on two cores that is what "two threads" can show)
#   (iii) resident memory per allocation: (VmRSS with ALLOCS allocations held - VmRSS before) / ALLOCS
#   (iv)  streams: turnutils_uclient over TCP (-t) and over TLS (-t -S, a throwaway self-signed certificate for
#         both servers), unpaced (-z 0): messages relayed per second, loss, server CPU per message
#   (v)   streamblast: Benchmarks/relay/streamblast -> relay over TCP and over TLS (1.2 for both: coturn 4.6.1 has no
#         1.3) -> sink, ChannelData flat out with 1 and CLIENTS clients: relayed pkt/s, server CPU per packet
# Flat out runs FLAT_RUNS times per server (the best is reported: the figure varies by some 15 % run to run).
# Each phase gets a fresh server on its own port (uclient leaves allocations behind until they expire).
# The server runs on core SERVER_CORE, the load tools on TOOLS_CORE (taskset); both servers with one relay thread
# (--relay-threads 1, coturn's --relay-threads=1) except in throughput2.
#
#   Benchmarks/run-relay.sh                  # both servers; builds switchboard (release) unless SWITCHBOARD_BIN
#   ONLY=coturn Benchmarks/run-relay.sh      # coturn alone (ONLY=switchboard: Switchboard alone)
#   SWITCHBOARD_BIN=.build/release/switchboard MESSAGES=500 ALLOCS=100 Benchmarks/run-relay.sh
#   SMOKE=1 Benchmarks/run-relay.sh          # a tiny run on the debug build (what CI runs)
# Needs: coturn (turnserver, turnutils_uclient, turnutils_peer: apt-get install -y coturn), gcc + libssl-dev (to
# build the load tools), python3, taskset. Takes about 2 minutes with the defaults below.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "${SMOKE:-0}" = 1 ]; then
    # A tiny run on the debug build, as CI runs it so the script cannot rot (figures mean nothing).
    SWITCHBOARD_BIN="${SWITCHBOARD_BIN:-$(swift build --show-bin-path)/switchboard}"
    [ -x "$SWITCHBOARD_BIN" ] || swift build --product switchboard
    MESSAGES="${MESSAGES:-20}" UCLIENTS="${UCLIENTS:-2}" CLIENTS="${CLIENTS:-1}" RATE="${RATE:-2000}"
    SECS="${SECS:-1}" FLAT_RUNS="${FLAT_RUNS:-1}" ALLOCS="${ALLOCS:-5}" RSS_SECS="${RSS_SECS:-1}"
    if [ ! -d "${TURN_LOAD_DIR:-$ROOT/../shared/tools/turn-load}" ]; then
        echo "smoke: no turn-load tools beside the checkout; only the uclient phase" >&2
        PHASES="${PHASES:-uclient streams}"
    fi
fi
MESSAGES="${MESSAGES:-1000}"        # uclient -n: messages per client
UCLIENTS="${UCLIENTS:-10}"          # uclient -m: clients
UCLIENT_FLAGS="${UCLIENT_FLAGS--c}"  # -c: no RTCP allocations; UCLIENT_FLAGS= runs uclient's default (EVEN-PORT R=1)
LEN="${LEN:-172}"                   # payload bytes, uclient -l and turnblast LEN
CLIENTS="${CLIENTS:-4}"             # turnblast clients (allocations) in the throughput runs
RATE="${RATE:-100000}"              # pkt/s in total for the fixed-rate run (a flat-out run, RATE=0, always runs too)
SECS="${SECS:-5}"                   # seconds of each throughput run
FLAT_RUNS="${FLAT_RUNS:-2}"         # flat-out runs per server, best one reported (1..6; flat out is the noisy one)
ALLOCS="${ALLOCS:-200}"             # allocations held for the memory figure
RSS_SECS="${RSS_SECS:-5}"           # how long they are held (1 pkt/s each)
ONLY="${ONLY:-both}"                # both | switchboard | coturn
BASE_PORT="${BASE_PORT:-3600}"      # Switchboard uses BASE_PORT..+14, coturn BASE_PORT+20..+34
SERVER_CORE="${SERVER_CORE:-0}"
TOOLS_CORE="${TOOLS_CORE:-1}"
MAX_RUN_SECS="${MAX_RUN_SECS:-900}" # hard limit on the whole run
CAPTURE="${CAPTURE:-0}"             # 1: tcpdump the uclient phase, summarised by Benchmarks/relay/stun_summary.py
PHASES="${PHASES:-uclient throughput throughput2 rss streams streamblast}"  # any of them, in this order
THREADS2="${THREADS2:-2}"           # relay threads per server in throughput2
TURN_LOAD_DIR="${TURN_LOAD_DIR:-../shared/tools/turn-load}"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/Benchmarks/results/tools}"
# Beyond the relay flags every deployment passes: uclient picks channel numbers from RFC 5766's 0x4000-0x7FFF and
# leaves one "probe" allocation per client behind, and the memory phase holds ALLOCS allocations of one user.
SWITCHBOARD_EXTRA_ARGS="${SWITCHBOARD_EXTRA_ARGS:---rfc5766-channels --max-allocations-per-user 10000}"

case "$ONLY" in both) SERVERS=(switchboard coturn) ;; switchboard | coturn) SERVERS=("$ONLY") ;;
    *) echo "ONLY must be both, switchboard or coturn (got '$ONLY')" >&2; exit 2 ;; esac
case "$TURN_LOAD_DIR" in /*) ;; *) TURN_LOAD_DIR="$ROOT/$TURN_LOAD_DIR" ;; esac
for tool in taskset python3 timeout; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done
for tool in turnutils_uclient turnutils_peer turnserver; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y coturn" >&2; exit 2; }
done
[ "$(nproc)" -ge 2 ] || { SERVER_CORE=0; TOOLS_CORE=0; echo "one core only: server and tools share it" >&2; }
if [ "$ALLOCS" -lt 1 ] || [ "$CLIENTS" -lt 1 ] || [ "$CLIENTS" -gt 256 ] || [ "$FLAT_RUNS" -lt 1 ] ||
    [ "$FLAT_RUNS" -gt 6 ]; then
    echo "ALLOCS must be >= 1, CLIENTS 1..256, FLAT_RUNS 1..6" >&2; exit 2
fi

STAMP="$(date +%Y%m%d-%H%M%S)"
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$ROOT/Benchmarks/results"
WORK="$ROOT/Benchmarks/results/relay-$STAMP"
JSON="$ROOT/Benchmarks/results/relay-$STAMP.json"
mkdir -p "$WORK"

# ---------------------------------------------------------------- processes: every one started is stopped
PIDS=()
forget_pid() { local keep=() p; for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
stop_pid() { # PID: TERM, up to 3 s, then KILL; reaps it
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "[$(date +%T)] $*" >&2; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
cpu_ticks() { # utime + stime of PID in clock ticks
    local s; s="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
    s="${s##*) }"; set -- $s; echo $(( ${12} + ${13} ))
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
udp_bound() { # PORT: true when something has 127.0.0.1:PORT or 0.0.0.0:PORT
    # The ports compared as strings: awk reads "0E74" as a number (0e74 = 0), which made 3700 look like 3620.
    awk -v p="$(printf '%04X' "$1")" 'NR > 1 { split($2, a, ":"); if ((a[2] "") == (p "") && (a[1] == "0100007F" || a[1] == "00000000")) f = 1 }
        END { exit !f }' /proc/net/udp
}
wait_for_line() { # FILE WORD SECONDS: true once FILE has a line starting with WORD
    local i; for i in $(seq $(( $3 * 10 ))); do grep -q "^$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1
}
fact() { echo "$2=$3" >> "$WORK/$1/facts"; }
RC=0
run_bounded() { # SECONDS OUTFILE COMMAND...: runs it under timeout in the background and waits (so a signal to this
    # script is handled at once, not after the command); sets RC to its exit code
    local secs="$1" out="$2" pid; shift 2
    timeout "$secs" "$@" > "$out" 2>&1 &
    pid=$!; PIDS+=("$pid")
    RC=0; wait "$pid" || RC=$?
    forget_pid "$pid"
}

finish_blast() { # SERVER RUN PID C0 W0: waits for a load tool, records the server's CPU ticks and the wall time since
    # C0/W0 (when the tool got ready) and its exit code; sets RC
    local server="$1" run="$2" pid="$3" c0="$4" w0="$5"
    RC=0; wait "$pid" || RC=$?
    forget_pid "$pid"
    if [ -n "$c0" ]; then
        fact "$server" "${run}_cpu_ticks" $(( $(cpu_ticks "$SERVER_PID") - c0 ))
        fact "$server" "${run}_wall_s" "$(elapsed "$w0" "$(now)")"
    fi
    fact "$server" "${run}_rc" "$RC"
}

# ---------------------------------------------------------------- ports
port_of() { # SERVER WHAT
    local base=$(( BASE_PORT + $( [ "$1" = coturn ] && echo 20 || echo 0 ) ))
    case "$2" in uclient) echo $base ;; throughput) echo $((base + 1)) ;; rss) echo $((base + 2)) ;;
        streams) echo $((base + 3)) ;; streams_tls) echo $((base + 4)) ;; throughput2) echo $((base + 5)) ;;
        peer) echo $((base + 10)) ;; sink_fixed) echo $((base + 12)) ;; sink_rss) echo $((base + 13)) ;;
        sink_flat*) echo $((base + 13 + ${2#sink_flat})) ;;   # sink_flat1..6: base+14..19
        sink_t2flat*) echo $((base + 13 + ${2#sink_t2flat})) ;; esac   # the same ports, one phase later
}
for server in "${SERVERS[@]}"; do
    for what in uclient throughput throughput2 rss streams streams_tls peer sink_fixed sink_rss \
        $(seq -f 'sink_flat%g' "$FLAT_RUNS"); do
        p="$(port_of "$server" "$what")"
        if udp_bound "$p" || { [ "$what" = peer ] && udp_bound $((p + 1)); }; then
            echo "UDP port $p (for $server $what) is taken on 127.0.0.1: pick another BASE_PORT" >&2; exit 2
        fi
    done
done

# ---------------------------------------------------------------- binaries
case " $PHASES " in *" throughput "* | *" throughput2 "* | *" rss "* | *" streamblast "*) NEEDS_TURN_LOAD=1 ;;
*) NEEDS_TURN_LOAD=0 ;; esac
if [ "$NEEDS_TURN_LOAD" = 1 ] && { [ ! -x "$TOOLS_DIR/turnblast" ] || [ ! -x "$TOOLS_DIR/sink" ] ||
    [ -n "$(find "$TURN_LOAD_DIR" -newer "$TOOLS_DIR/turnblast" -name '*.[ch]' 2>/dev/null)" ]; }; then
    log "building turnblast and sink into $TOOLS_DIR"
    bash "$TURN_LOAD_DIR/build.sh" "$TOOLS_DIR" >&2
fi
TURNBLAST="$TOOLS_DIR/turnblast"
SINK="$TOOLS_DIR/sink"
if [ "$ONLY" != coturn ]; then
    if [ -n "${SWITCHBOARD_BIN:-}" ]; then
        BIN="$SWITCHBOARD_BIN"
    else
        log "building switchboard (release)"
        swift build -c release --product switchboard >&2
        BIN="$(swift build -c release --show-bin-path)/switchboard"
    fi
    [ -x "$BIN" ] || { echo "no switchboard binary at $BIN" >&2; exit 2; }
fi
printf 'benchmark-turn-secret-%s-0123456789abcdef\n' "$STAMP" > "$WORK/turn-secret"   # >= 32 bytes
# Watchdog (from here on, builds excluded): stops the run if it takes longer than MAX_RUN_SECS; kills its own sleep
# when it is stopped first.
( trap 'kill "$sp" 2>/dev/null; exit 0' TERM; sleep "$MAX_RUN_SECS" & sp=$!; wait "$sp"
  echo "run-relay.sh: over ${MAX_RUN_SECS}s, stopping" >&2; kill -TERM $$ ) &
PIDS+=($!)

{
    for k in MESSAGES UCLIENTS UCLIENT_FLAGS LEN CLIENTS RATE SECS FLAT_RUNS THREADS2 ALLOCS RSS_SECS ONLY PHASES \
        SERVER_CORE TOOLS_CORE BASE_PORT SWITCHBOARD_EXTRA_ARGS; do echo "$k=${!k}"; done
    echo "CLK_TCK=$(getconf CLK_TCK)"
    echo "DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) x $(nproc)"
    echo "KERNEL=$(uname -r)"
    echo "LOADAVG_AT_START=$LOAD_AT_START"
} > "$WORK/settings"
for server in "${SERVERS[@]}"; do mkdir -p "$WORK/$server"; : > "$WORK/$server/facts"; done
if awk '{ exit !($1 > 0.8) }' /proc/loadavg; then
    log "warning: load average $LOAD_AT_START: something else is running, the figures will be noisy"
fi

# ---------------------------------------------------------------- servers
SERVER_PID=
SERVER_CPUS="$SERVER_CORE"   # taskset's CPU list for the server, and its relay threads (throughput2 changes both)
SERVER_THREADS=1
TOOLS_CPUS="$TOOLS_CORE"     # the same for turnblast and the sink
start_server() { # SERVER PORT LOGFILE [TLSPORT]: starts it on SERVER_CPUS with SERVER_THREADS relay threads (TCP on
    # PORT too, TLS on TLSPORT with $WORK/cert.pem), waits for a STUN Binding answer, sets SERVER_PID
    local server="$1" port="$2" logfile="$3" tls_port="${4:-}" rc=0
    case "$server" in
    switchboard)
        local tls=(--no-turns)
        [ -z "$tls_port" ] || tls=(--turns-port "$tls_port" --cert "$WORK/cert.pem" --key "$WORK/key.pem")
        # shellcheck disable=SC2086
        set -- "$BIN" relay --turn-host 127.0.0.1 --turn-port "$port" --relay-ports 50000-59999 --realm example.org \
            --turn-user alice:secret --allow-peer 127.0.0.0/8 --turn-secret-file "$WORK/turn-secret" "${tls[@]}" \
            --relay-threads "$SERVER_THREADS" $SWITCHBOARD_EXTRA_ARGS
        env -u SWITCHBOARD_TURN_SECRET taskset -c "$SERVER_CPUS" "$@" > "$logfile" 2>&1 &
        ;;
    coturn)
        local tls=(--no-tls)
        [ -z "$tls_port" ] || tls=(--tls-listening-port="$tls_port" --cert="$WORK/cert.pem" --pkey="$WORK/key.pem")
        set -- turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port="$port" \
            --min-port=40000 --max-port=49999 --lt-cred-mech --user=alice:secret --realm=example.org \
            --allow-loopback-peers --no-cli "${tls[@]}" --no-dtls --fingerprint --relay-threads="$SERVER_THREADS" \
            --log-file=stdout
        taskset -c "$SERVER_CPUS" "$@" > "$logfile" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    grep -q '^command=' "$WORK/$server/facts" || fact "$server" command "$*"
    [ "$SERVER_THREADS" = 1 ] || grep -q '^command_threads=' "$WORK/$server/facts" || fact "$server" command_threads "$*"
    python3 "$ROOT/Benchmarks/relay/stun_ping.py" "$port" 10 "$SERVER_PID" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "$server did not answer a STUN Binding on 127.0.0.1:$port within 10 s (rc=$rc); its log:" >&2
        tail -20 "$logfile" >&2
        exit 1
    fi
}

# ---------------------------------------------------------------- (i) uclient through an echo peer
phase_uclient() {
    local server="$1" dir="$WORK/$1" port peer peer_pid c0 w0 rc=0
    port="$(port_of "$server" uclient)"; peer="$(port_of "$server" peer)"
    log "$server: uclient $UCLIENT_FLAGS -n $MESSAGES -m $UCLIENTS -l $LEN (port $port, echo peer $peer)"
    taskset -c "$TOOLS_CORE" turnutils_peer -L 127.0.0.1 -p "$peer" > "$dir/peer.log" 2>&1 &
    peer_pid=$!; PIDS+=("$peer_pid")
    start_server "$server" "$port" "$dir/server-uclient.log"
    for _ in $(seq 50); do udp_bound "$peer" && break; sleep 0.1; done
    local cap_pid=
    if [ "$CAPTURE" = 1 ]; then
        if command -v tcpdump >/dev/null; then
            tcpdump -i lo -U -w "$dir/uclient.pcap" udp port "$port" > "$dir/tcpdump.log" 2>&1 &
            cap_pid=$!; PIDS+=("$cap_pid")
            wait_for_line "$dir/tcpdump.log" "tcpdump: listening" 5 || log "tcpdump did not start"
        else
            log "CAPTURE=1 but no tcpdump (apt-get install -y tcpdump): not capturing"
        fi
    fi
    c0="$(cpu_ticks "$SERVER_PID")"; w0="$(now)"
    # shellcheck disable=SC2086
    run_bounded $(( MESSAGES * 3 / 100 + 30 )) "$dir/uclient.out" taskset -c "$TOOLS_CORE" turnutils_uclient \
        $UCLIENT_FLAGS -u alice -w secret -n "$MESSAGES" -m "$UCLIENTS" -l "$LEN" -e 127.0.0.1 -r "$peer" \
        -p "$port" 127.0.0.1
    rc=$RC
    fact "$server" uclient_cpu_ticks $(( $(cpu_ticks "$SERVER_PID") - c0 ))
    fact "$server" uclient_wall_s "$(elapsed "$w0" "$(now)")"
    fact "$server" uclient_rc "$rc"
    [ "$rc" -eq 0 ] || log "$server: uclient exited $rc: $(grep -m1 -E 'ERROR|error|refused' "$dir/uclient.out" || true)"
    if [ -n "$cap_pid" ]; then
        sleep 1; stop_pid "$cap_pid"
        python3 "$ROOT/Benchmarks/relay/stun_summary.py" "$dir/uclient.pcap" "$port" > "$dir/uclient-stun.txt" 2>&1 || true
        log "$server: uclient's messages summarised in $dir/uclient-stun.txt"
    fi
    stop_pid "$SERVER_PID"; stop_pid "$peer_pid"
}

# ---------------------------------------------------------------- (ii) throughput with turnblast -> sink
blast_run() { # SERVER RUN RATE [PHASE]: the server of PHASE (throughput) is running
    local server="$1" run="$2" rate="$3" dir="$WORK/$1" port sinkport sink_pid blast_pid c0 w0 rc=0
    port="$(port_of "$server" "${4:-throughput}")"; sinkport="$(port_of "$server" "sink_$run")"
    log "$server: turnblast $run: RATE=$rate CLIENTS=$CLIENTS LEN=$LEN SECS=$SECS, $SERVER_THREADS relay thread(s)"
    taskset -c "$TOOLS_CPUS" "$SINK" "$sinkport" $(( SECS + 30 )) 500 > "$dir/sink_$run.out" 2>&1 &
    sink_pid=$!; PIDS+=("$sink_pid")
    wait_for_line "$dir/sink_$run.out" READY 5 || { echo "sink did not start" >&2; exit 1; }
    timeout $(( SECS + 60 )) taskset -c "$TOOLS_CPUS" "$TURNBLAST" "$port" "$sinkport" "$LEN" "$rate" "$SECS" \
        "$CLIENTS" > "$dir/blast_$run.out" 2>&1 &
    blast_pid=$!; PIDS+=("$blast_pid")
    if wait_for_line "$dir/blast_$run.out" READY 30; then
        c0="$(cpu_ticks "$SERVER_PID")"; w0="$(now)"
    else
        c0=; w0=
    fi
    finish_blast "$server" "$run" "$blast_pid" "$c0" "${w0:-}"; rc=$RC
    if [ "$rc" -ne 0 ]; then
        log "$server: turnblast exited $rc: $(head -c 300 "$dir/blast_$run.out")"
        stop_pid "$sink_pid"   # prints its SINK line on TERM
    else
        # The sink stops 500 ms after the last packet; one that got nothing is stopped here (and says rx=0).
        for _ in $(seq 50); do kill -0 "$sink_pid" 2>/dev/null || break; sleep 0.1; done
        stop_pid "$sink_pid"
    fi
}
phase_throughput() {
    local server="$1"
    start_server "$server" "$(port_of "$server" throughput)" "$WORK/$server/server-throughput.log"
    local i
    for i in $(seq "$FLAT_RUNS"); do blast_run "$server" "flat$i" 0; done
    blast_run "$server" fixed "$RATE"
    stop_pid "$SERVER_PID"
}
phase_throughput2() { # flat out with THREADS2 relay threads, server and tools on every core
    local server="$1" i all="0-$(( $(nproc) - 1 ))"
    SERVER_CPUS="$all"; SERVER_THREADS="$THREADS2"; TOOLS_CPUS="$all"
    start_server "$server" "$(port_of "$server" throughput2)" "$WORK/$server/server-throughput2.log"
    for i in $(seq "$FLAT_RUNS"); do blast_run "$server" "t2flat$i" 0 throughput2; done
    stop_pid "$SERVER_PID"
    SERVER_CPUS="$SERVER_CORE"; SERVER_THREADS=1; TOOLS_CPUS="$TOOLS_CORE"
}

# ---------------------------------------------------------------- (iii) resident memory per allocation
phase_rss() {
    local server="$1" dir="$WORK/$1" port sinkport sink_pid before with=0 left chunk i r rc=0 pids=() outs=()
    port="$(port_of "$server" rss)"; sinkport="$(port_of "$server" sink_rss)"
    log "$server: RSS with $ALLOCS allocations held"
    start_server "$server" "$port" "$dir/server-rss.log"
    # A sink that outlives the whole phase (idle limit 60 s), so relayed packets never meet a closed port.
    taskset -c "$TOOLS_CORE" "$SINK" "$sinkport" $(( RSS_SECS + 120 )) 60000 > "$dir/sink_rss.out" 2>&1 &
    sink_pid=$!; PIDS+=("$sink_pid")
    wait_for_line "$dir/sink_rss.out" READY 5 || { echo "sink did not start" >&2; exit 1; }
    # Warm-up: two allocations made and deleted, so first-use costs are not counted per allocation.
    run_bounded 30 "$dir/blast_warmup.out" taskset -c "$TOOLS_CORE" "$TURNBLAST" "$port" "$sinkport" "$LEN" 100 1 2
    [ "$RC" -eq 0 ] || log "$server: warm-up turnblast failed: $(head -c 300 "$dir/blast_warmup.out")"
    sleep 1
    before="$(rss_kib "$SERVER_PID")"
    left="$ALLOCS"; i=0
    while [ "$left" -gt 0 ]; do   # turnblast holds at most 256 allocations: several run side by side
        chunk=$(( left > 250 ? 250 : left )); left=$(( left - chunk )); i=$(( i + 1 ))
        timeout $(( RSS_SECS + 90 )) taskset -c "$TOOLS_CORE" "$TURNBLAST" "$port" "$sinkport" "$LEN" "$chunk" \
            "$RSS_SECS" "$chunk" > "$dir/blast_rss_$i.out" 2>&1 &
        pids+=($!); PIDS+=($!); outs+=("$dir/blast_rss_$i.out")
    done
    for r in "${outs[@]}"; do wait_for_line "$r" READY 60 || { rc=1; log "$server: $(head -c 300 "$r")"; }; done
    if [ "$rc" -eq 0 ]; then
        sleep 1
        for _ in $(seq 5); do r="$(rss_kib "$SERVER_PID")"; [ "$r" -gt "$with" ] && with="$r"; sleep 0.2; done
    fi
    for i in "${pids[@]}"; do wait "$i" || rc=$?; forget_pid "$i"; done
    sleep 1
    fact "$server" rss_before_kib "$before"
    if [ "$with" -gt 0 ]; then fact "$server" rss_with_kib "$with"; fi
    fact "$server" rss_after_kib "$(rss_kib "$SERVER_PID")"
    fact "$server" rss_allocs "$ALLOCS"
    fact "$server" rss_rc "$rc"
    stop_pid "$sink_pid"; stop_pid "$SERVER_PID"
}

# ---------------------------------------------------------------- (iv) uclient over TCP and TLS
phase_streams() {
    local server="$1" dir="$WORK/$1" port tls_port peer peer_pid mode flags c0 w0
    port="$(port_of "$server" streams)"; tls_port="$(port_of "$server" streams_tls)"; peer="$(port_of "$server" peer)"
    taskset -c "$TOOLS_CORE" turnutils_peer -L 127.0.0.1 -p "$peer" > "$dir/peer-streams.log" 2>&1 &
    peer_pid=$!; PIDS+=("$peer_pid")
    start_server "$server" "$port" "$dir/server-streams.log" "$tls_port"
    for _ in $(seq 50); do udp_bound "$peer" && break; sleep 0.1; done
    for mode in tcp tls; do
        flags=(-t); local target="$port"
        [ "$mode" = tcp ] || { flags=(-t -S); target="$tls_port"; }
        log "$server: uclient ${flags[*]} -c -z 0 -n $MESSAGES -m $UCLIENTS -l $LEN (port $target)"
        c0="$(cpu_ticks "$SERVER_PID")"; w0="$(now)"
        run_bounded $(( MESSAGES * 3 / 100 + 30 )) "$dir/uclient_$mode.out" taskset -c "$TOOLS_CORE" \
            turnutils_uclient "${flags[@]}" -c -z 0 -u alice -w secret -n "$MESSAGES" -m "$UCLIENTS" -l "$LEN" \
            -e 127.0.0.1 -r "$peer" -p "$target" 127.0.0.1
        fact "$server" "uclient_${mode}_rc" "$RC"
        fact "$server" "uclient_${mode}_cpu_ticks" $(( $(cpu_ticks "$SERVER_PID") - c0 ))
        fact "$server" "uclient_${mode}_wall_s" "$(elapsed "$w0" "$(now)")"
        [ "$RC" -eq 0 ] || log "$server: uclient over $mode exited $RC: $(grep -m1 -E 'ERROR|error' "$dir/uclient_$mode.out" || true)"
    done
    stop_pid "$SERVER_PID"; stop_pid "$peer_pid"
}

# ---------------------------------------------------------------- (v) streamblast: ChannelData flat out over TCP, TLS
STREAM_CLIENTS="${STREAM_CLIENTS:-$([ "$CLIENTS" = 1 ] && echo 1 || echo "1 $CLIENTS")}"  # SMOKE (CLIENTS=1): "1"
phase_streamblast() { # SERVER: streamblast tcp|tls -> relay -> sink flat out, FLAT_RUNS runs per mode and client count
    local server="$1" dir="$WORK/$1" sb="$TOOLS_DIR/streamblast" mode m i run port sinkport sink_pid blast_pid c0 w0 rc
    [ -x "$sb" ] && [ ! "$ROOT/Benchmarks/relay/streamblast.c" -nt "$sb" ] ||
        TURN_LOAD_DIR="$TURN_LOAD_DIR" bash "$ROOT/Benchmarks/relay/build-streamblast.sh" "$TOOLS_DIR" >&2
    [ -x "$SINK" ] || bash "$TURN_LOAD_DIR/build.sh" "$TOOLS_DIR" >&2
    start_server "$server" "$(port_of "$server" streams)" "$dir/server-streamblast.log" "$(port_of "$server" streams_tls)"
    for mode in tcp tls; do for m in $STREAM_CLIENTS; do for i in $(seq "$FLAT_RUNS"); do
        run="sb_$mode${m}_$i"; sinkport="$(port_of "$server" "sink_flat$i")"; port="$(port_of "$server" streams)"
        [ "$mode" = tcp ] || port="$(port_of "$server" streams_tls)"
        log "$server: streamblast $mode flat out, $m client(s), LEN=$LEN SECS=$SECS, run $i (port $port)"
        taskset -c "$TOOLS_CORE" "$SINK" "$sinkport" $(( SECS + 30 )) 500 > "$dir/sink_$run.out" 2>&1 &
        sink_pid=$!; PIDS+=("$sink_pid")
        wait_for_line "$dir/sink_$run.out" READY 5 || { echo "sink did not start" >&2; exit 1; }
        timeout $(( SECS + 60 )) taskset -c "$TOOLS_CORE" "$sb" "$mode" "$port" "$sinkport" "$LEN" 0 "$SECS" "$m" \
            > "$dir/blast_$run.out" 2>&1 &
        blast_pid=$!; PIDS+=("$blast_pid"); c0=; rc=0
        if wait_for_line "$dir/blast_$run.out" READY 30; then c0="$(cpu_ticks "$SERVER_PID")"; w0="$(now)"; fi
        finish_blast "$server" "$run" "$blast_pid" "$c0" "${w0:-}"; rc=$RC
        [ "$rc" -eq 0 ] || log "$server: streamblast exited $rc: $(head -c 300 "$dir/blast_$run.out")"
        for _ in $(seq 50); do kill -0 "$sink_pid" 2>/dev/null || break; sleep 0.1; done  # exits 500 ms after the last
        stop_pid "$sink_pid"
    done; done; done
    stop_pid "$SERVER_PID"
}

case " $PHASES " in *" streams "* | *" streamblast "*)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" > "$WORK/openssl.log" 2>&1 \
        || { echo "openssl could not make the TLS certificate: $(cat "$WORK/openssl.log")" >&2; exit 2; } ;;
esac
for server in "${SERVERS[@]}"; do
    case "$server" in
    coturn) fact coturn version "coturn $(turnserver --version 2>&1 | head -1)" ;;
    switchboard) fact switchboard version "$BIN $(date -r "$BIN" +%FT%T) sha256:$(sha256sum "$BIN" | cut -c1-12)" ;;
    esac
done
for phase in uclient throughput throughput2 rss streams streamblast; do
    case " $PHASES " in *" $phase "*) ;; *) continue ;; esac
    for server in "${SERVERS[@]}"; do "phase_$phase" "$server"; done
done

echo
echo "TURN relay, 127.0.0.1, server on core $SERVER_CORE, tools on core $TOOLS_CORE ($(nproc) cores," \
    "load average at start $LOAD_AT_START)"
python3 "$ROOT/Benchmarks/relay/report.py" "$WORK" "$JSON"
python3 "$ROOT/Benchmarks/relay/streamblast_report.py" "$WORK" "${JSON%.json}-streams.json"
echo "raw logs: $WORK"
