#!/bin/bash
# Builds streamblast (TURN over TCP/TLS load client) into a folder you name (default: Benchmarks/results/tools, where
# run-relay.sh keeps turnblast and sink). It includes common.h from the shared turn-load tools (TURN_LOAD_DIR,
# default ../shared/tools/turn-load beside the checkout, as in run-relay.sh). Needs a C compiler and libssl-dev.
set -eu
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
out=${1:-$root/Benchmarks/results/tools}
load=${TURN_LOAD_DIR:-$root/../shared/tools/turn-load}
case "$load" in /*) ;; *) load="$root/$load" ;; esac
[ -f "$load/common.h" ] || { echo "no common.h in $load (set TURN_LOAD_DIR)" >&2; exit 2; }
mkdir -p "$out"
${CC:-cc} -std=c11 -O2 -Wall -Wextra -I "$load" -o "$out/streamblast" "$here/streamblast.c" \
    $(pkg-config --cflags --libs libssl libcrypto 2>/dev/null || echo -lssl -lcrypto)
echo "built $out/streamblast"
