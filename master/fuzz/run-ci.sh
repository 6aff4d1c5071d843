#!/usr/bin/env bash
# CI's fuzzing stage: builds agora-fuzz and runs every target for AGORA_FUZZ_SECONDS
# (default 20) seconds from its committed corpus, printing the time of the build and of
# each target. A crash fails the stage after every target has run; its input is in
# master/fuzz/artifacts/<target>/ (replay it with `agora-fuzz replay`).
#
# The build: AGORA_FUZZ_PROFILE=dev (the default) builds the workspace's binaries in the dev
# profile, which CI's test stage has compiled already and its fault-injection stage needs
# next, so the stage pays for agora-fuzz alone (seconds instead of the ~5 minutes a
# separate profile cost on a clean 2-core machine). Its targets run slower unoptimized
# (see docs/benchmarks.md for executions per target). AGORA_FUZZ_PROFILE=fuzz builds the
# profile `fuzz` (dev with opt-level 1, ~85% of release speed, overflow checks and debug
# assertions on; artifacts in target/fuzz/): the one for long runs.
#
# AGORA_FUZZ_SEED fixes the mutations (default: the clock; each run prints its seed).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${AGORA_FUZZ_SECONDS:-20}
seed=${AGORA_FUZZ_SEED:-$(date +%s)}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

profile=${AGORA_FUZZ_PROFILE:-dev}

start=$SECONDS
case $profile in
dev)
    cargo build --locked --workspace --bins
    bin=$target_dir/debug/agora-fuzz
    ;;
fuzz)
    cargo build --locked -p agora-fuzz --profile fuzz \
        --config 'profile.fuzz.inherits="dev"' --config 'profile.fuzz.opt-level=1'
    bin=$target_dir/fuzz/agora-fuzz
    ;;
*)
    echo "AGORA_FUZZ_PROFILE: dev or fuzz, not $profile"
    exit 2
    ;;
esac
echo "-- agora-fuzz build ($profile): $((SECONDS - start)) s"

failed=()
for target in $("$bin" list | awk '{print $1}'); do
    t0=$SECONDS
    if ! "$bin" run "$target" --seconds "$seconds" --seed "$seed"; then
        failed+=("$target")
    fi
    echo "-- fuzz $target: $((SECONDS - t0)) s"
done
echo "-- fuzzing: $((SECONDS - start)) s in all (build included)"
if [ ${#failed[@]} -gt 0 ]; then
    echo "agora-fuzz found crashes in: ${failed[*]} (inputs under master/fuzz/artifacts/)"
    exit 1
fi
