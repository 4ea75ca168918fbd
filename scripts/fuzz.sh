#!/usr/bin/env bash
# Runs Pouch's cargo-fuzz (libFuzzer) targets, each for a set time. See docs/FUZZING.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when it is missing. Needs the
# nightly toolchain (libFuzzer's instrumentation flags are nightly-only); it is not updated here.
# Corpora grow in fuzz/corpus/<target> (gitignored) on top of the committed seeds in
# fuzz/seeds/<target> and regressions in fuzz/regressions/<target>; crashes, OOMs and timeouts land in fuzz/artifacts/<target>. Exits 1 if any
# target found one (the others still run), 2 on a setup or build error.
#
# Environment:
#   FUZZ_TOOLCHAIN  rustup toolchain to use (default: nightly)
#   FUZZ_SANITIZER  none | address | … (default: none: fastest build and runs; the targets are
#                   about panics, hangs and broken invariants, ASan adds little to safe Rust)
#   FUZZ_ARGS       extra libFuzzer flags for every run, e.g. "-fork=4 -max_len=65536"
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here/fuzz" || exit 2

secs=${1:-60}
[ $# -gt 0 ] && shift
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;; esac
tc=${FUZZ_TOOLCHAIN:-nightly}
san=${FUZZ_SANITIZER:-none}
read -r -a extra <<<"${FUZZ_ARGS:-}"

if ! cargo "+$tc" --version >/dev/null 2>&1; then
    echo "fuzz.sh: the $tc toolchain is missing: rustup toolchain install $tc --profile minimal" >&2
    exit 2
fi
if ! cargo "+$tc" fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked || exit 2
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "+$tc" fuzz list)
fi

t0=$(date +%s)
if [ $# -gt 0 ]; then
    for t in "${targets[@]}"; do
        cargo "+$tc" fuzz build --sanitizer "$san" "$t" || exit 2
    done
else
    cargo "+$tc" fuzz build --sanitizer "$san" || exit 2 # all targets in one cargo run
fi
echo "fuzz.sh: built in $(($(date +%s) - t0)) s" >&2

failed=()
summary=()
mkdir -p logs
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    dirs=("corpus/$t")
    [ -d "seeds/$t" ] && dirs+=("seeds/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    log="logs/$t.log"
    echo "fuzz.sh: $t for $secs s (log: fuzz/$log)" >&2
    cargo "+$tc" fuzz run --sanitizer "$san" "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        "${extra[@]}" >"$log" 2>&1
    rc=$?
    statv() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    found=$(grep -m1 -oE "(crash|oom|timeout|leak|slow-unit)-[0-9a-f]+" "$log" | head -1)
    line=$(printf '%-18s rc=%-3s runs=%-10s exec/s=%-7s corpus+=%-5s rss=%sMB %s' "$t" "$rc" \
        "$(statv number_of_executed_units)" "$(statv average_exec_per_sec)" \
        "$(statv new_units_added)" "$(statv peak_rss_mb)" "${found:+FOUND artifacts/$t/$found}")
    summary+=("$line")
    if [ $rc -ne 0 ] || { [ -n "$found" ] && [ "${found#slow-unit}" = "$found" ]; }; then
        failed+=("$t")
        grep -m1 -B2 -A25 -E "panicked at|ERROR: libFuzzer|==ERROR" "$log" >&2
    fi
done

echo
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: findings in: ${failed[*]} (reproduce: cargo +$tc fuzz run --sanitizer $san TARGET fuzz/artifacts/TARGET/FILE)" >&2
    exit 1
fi
