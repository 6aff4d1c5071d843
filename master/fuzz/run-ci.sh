#!/usr/bin/env bash
# CI's fuzzing stage: builds agora-fuzz and runs every target for AGORA_FUZZ_SECONDS
# (default 20) seconds from its committed corpus, printing the time of the build and of
# each target. A crash fails the stage after every target has run; its input is in
# master/fuzz/artifacts/<target>/ (replay it with `agora-fuzz replay`).
#
# The build uses its own profile, `fuzz`: dev with opt-level 1, defined here so the
# workspace's profiles stay as they are. Measured on this 2-core machine, it builds from
# scratch in about 2m40s (release: 3m10s to 4m35s, 20% more CPU), runs the targets at about
# 85% of release speed, and keeps overflow checks and debug assertions on, which release
# turns off. Its artifacts go to target/fuzz/, apart from dev's and release's.
#
# AGORA_FUZZ_SEED fixes the mutations (default: the clock; each run prints its seed).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${AGORA_FUZZ_SECONDS:-20}
seed=${AGORA_FUZZ_SEED:-$(date +%s)}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

start=$SECONDS
cargo build --locked -p agora-fuzz --profile fuzz \
    --config 'profile.fuzz.inherits="dev"' --config 'profile.fuzz.opt-level=1'
echo "-- agora-fuzz build: $((SECONDS - start)) s"
bin=$target_dir/fuzz/agora-fuzz

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
