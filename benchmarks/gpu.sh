#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md in one go, on one CUDA device (about 12 minutes on an H100),
# or only the named ones (each issue's device check, at most ~8 minutes):
#     bash benchmarks/gpu.sh OUT_DIR [NAME ...]
# Writes OUT_DIR/<name>.json (what each benchmark printed) and OUT_DIR/<name>.log (its stderr). A
# benchmark that fails or runs past STEP_TIMEOUT seconds (default 300) is reported and the rest go on.
set -u
out=${1:?usage: bash benchmarks/gpu.sh OUT_DIR [NAME ...]}
shift
only=" $* "
python=${PYTHON:-python}
mkdir -p "$out"
no_checkpointing=$(mktemp --suffix .yaml)
printf 'model:\n  activation_checkpointing: false\n' > "$no_checkpointing"
per_tensor_optimizer=$(mktemp --suffix .yaml)
printf 'model:\n  optim:\n    implementation: for_loop\n' > "$per_tensor_optimizer"
failed=0

run() {
    local name=$1; shift
    [[ "$only" == "  " || "$only" == *" $name "* ]] || return 0
    echo "== $name: $*"
    if timeout "${STEP_TIMEOUT:-300}" "$python" "$@" > "$out/$name.json" 2> "$out/$name.log"; then
        cat "$out/$name.json"
    else
        echo "$name failed (exit $?):"; tail -n 25 "$out/$name.log"; failed=1
    fi
}

run train_step benchmarks/train_step.py --config configs/vmas.yaml --profile-steps 3     # as configured, + op profile
# the dadaptation package's D-Adapt Adam (per tensor, two host syncs each: before) against the foreach one above
run train_step_per_tensor_optimizer benchmarks/train_step.py --config configs/vmas.yaml --config "$per_tensor_optimizer"
# MusicGen-medium, bf16, 10-s clips: the dynamic cache (before) and the static cache's graphed and compiled steps
run generate_before benchmarks/generate.py --decoder medium --modes dynamic --batches 1,32
run generate_graph benchmarks/generate.py --decoder medium --modes cuda_graph --batches 1,16,32
run generate_compiled benchmarks/generate.py --decoder medium --modes torch_compile --batches 1,16,32  # compiles per batch
run train_step_no_checkpointing benchmarks/train_step.py --config configs/vmas.yaml --config "$no_checkpointing"
run optical_flow benchmarks/optical_flow.py                                               # RAFT on CUDA and CPU
# issue 32's sizing: Table 5 at two seeds, 200 steps on 1,000 clips, its 6 runs sharing the GPU; its wall
# time and seconds per step size the whole ablation (data, runs, tests) for one 8-minute command
run ablation_slice benchmarks/ablation.py --device cuda --jobs 6 --data-workers 12 --tables 5 --seeds 0 1 \
    --steps 200 --num-train 1000 --out "$out/ablation_slice" --pack "$out/ablation_slice_records.json"
rm -f "$no_checkpointing" "$per_tensor_optimizer"
exit $failed
