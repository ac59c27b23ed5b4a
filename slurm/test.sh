#!/usr/bin/env bash
# Evaluate a trained VMAs checkpoint with `vmas test` on one node x 8 GPUs: every rank generates
# music for its part of the test split; FAD, KL, MV-Align and retrieval are reduced over all ranks.
#
#   sbatch slurm/test.sh [extra `vmas test` options]
#   RUN_DIR=runs/vmas sbatch -p gpu -A myproject slurm/test.sh --data.root data/disco-mv
#
# Knobs (pass sbatch options, which override the #SBATCH lines, or env vars):
#   partition/account/time  sbatch -p/-A/--time, or SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT
#   nodes, GPUs             sbatch --nodes, --ntasks-per-node (= GPUs per node), --gpus-per-node
#   CONFIG       LightningCLI configs, space-separated, merged in order [configs/vmas.yaml]
#   RUN_DIR      the training run folder [runs/vmas]
#   CKPT_PATH    checkpoint to evaluate [newest of $RUN_DIR/checkpoints/last*.ckpt, hpc_ckpt_*.ckpt]
#   OUT_DIR      generated audio and metrics (model.evaluation.output_dir) [$RUN_DIR/test]
#   ACCELERATOR  gpu | cpu [gpu]   DEVICES [$SLURM_NTASKS_PER_NODE]   NODES [$SLURM_JOB_NUM_NODES]
#   EXTRA_ARGS   more `vmas test` options (word-split)   VMAS [vmas]   PYTHON [python]
#
#SBATCH --job-name=vmas-test
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

CONFIG=${CONFIG:-configs/vmas.yaml}
RUN_DIR=${RUN_DIR:-runs/vmas}
OUT_DIR=${OUT_DIR:-$RUN_DIR/test}
ACCELERATOR=${ACCELERATOR:-gpu}
NODES=${NODES:-${SLURM_JOB_NUM_NODES:-1}}
DEVICES=${DEVICES:-${SLURM_NTASKS_PER_NODE:-1}}
VMAS=${VMAS:-vmas}
PYTHON=${PYTHON:-python}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

CKPT_PATH=${CKPT_PATH:-$("$PYTHON" -m vmas_lightning.checkpointing "$RUN_DIR")}
if [ "$CKPT_PATH" = null ]; then
  echo "slurm/test.sh: no checkpoint in $RUN_DIR; set RUN_DIR or CKPT_PATH" >&2
  exit 2
fi
echo "vmas test: ${CKPT_PATH} on ${NODES} node(s) x ${DEVICES} ${ACCELERATOR}, outputs in ${OUT_DIR}"

CONFIG_ARGS=()
for config in $CONFIG; do CONFIG_ARGS+=(--config "$config"); done

# shellcheck disable=SC2086  # EXTRA_ARGS is word-split on purpose
srun --kill-on-bad-exit=1 "$VMAS" test "${CONFIG_ARGS[@]}" \
  --trainer.accelerator "$ACCELERATOR" \
  --trainer.num_nodes "$NODES" \
  --trainer.devices "$DEVICES" \
  --trainer.default_root_dir "$OUT_DIR" \
  --model.evaluation.output_dir "$OUT_DIR" \
  --ckpt_path "$CKPT_PATH" \
  ${EXTRA_ARGS:-} "$@"
