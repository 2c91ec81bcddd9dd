#!/usr/bin/env bash
# libFuzzer runs of Switchboard's hostile-input parsers, each for a bounded time (what CI runs).
#
#   Fuzz/run.sh                      # every target, FUZZ_SECONDS each (default 45)
#   Fuzz/run.sh sdp stun             # some targets
#   FUZZ_SECONDS=600 Fuzz/run.sh sdp # longer
#
# Targets (Fuzz/Sources/switchboard-fuzz/FuzzTargets.swift): stun (the STUN/TURN decoder and every reader),
# sdp (the SDP keying check), sse (the SSE parser), body (the API's request-body decoders). Seeds are in
# Fuzz/corpus/TARGET (from the real fixtures); what a run discovers goes to a scratch corpus, never into the repo.
# A finding (a crash, a failed property, a leak under AddressSanitizer) stops the run with its input saved in
# .build-fuzz/findings/ and this script fails; replay it with `.build/debug/switchboard-fuzz TARGET FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${FUZZ_SECONDS:-45}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(stun sdp sse body)

# Instrumented for coverage (libFuzzer) and memory errors (AddressSanitizer), in its own scratch path so the
# ordinary build keeps its cache. swiftc keeps only the last -sanitize= it is given, and SwiftPM passes one per
# --sanitize in no fixed order: the combined flag comes last so that Swift code gets both.
flags=(--product switchboard-fuzz --scratch-path .build-fuzz --sanitize fuzzer --sanitize address
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING)
swift build "${flags[@]}"
binary="$(swift build "${flags[@]}" --show-bin-path)/switchboard-fuzz"
# A binary without coverage would "fuzz" blind and find nothing: refuse it.
# (grep -c reads all of nm's output: grep -q would stop early and fail the pipeline under pipefail.)
if [ "$(nm "$(dirname "$binary")/SwitchboardCore.build/SDPKeyingCheck.swift.o" | grep -c __sanitizer_cov)" -eq 0 ]; then
    echo "fuzz: the build is not instrumented for coverage" >&2
    exit 1
fi

mkdir -p .build-fuzz/findings
failed=()
for target in "${targets[@]}"; do
    [ -d "Fuzz/corpus/$target" ] || { echo "fuzz: no target $target" >&2; exit 2; }
    scratch="$(mktemp -d)"
    echo "== fuzz $target for ${SECONDS_EACH}s (seeds: $(ls "Fuzz/corpus/$target" | wc -l))"
    if SWITCHBOARD_FUZZ_TARGET="$target" "$binary" "$scratch" "Fuzz/corpus/$target" \
        -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix=".build-fuzz/findings/$target-" 2>"$scratch.log"; then
        grep -E "stat::number_of_executed_units|cov:" "$scratch.log" | tail -2 || true
    else
        failed+=("$target")
        tail -n 40 "$scratch.log" >&2
    fi
    rm -rf "$scratch" "$scratch.log"
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: findings in ${failed[*]} (inputs in .build-fuzz/findings/)" >&2
    exit 1
fi
echo "fuzz: no findings in ${targets[*]}"
