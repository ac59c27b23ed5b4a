#!/usr/bin/env bash
# Train VMAs on 4 nodes x 8 GPUs (the paper's setup) with DDP, auto-requeue and automatic resume.
#
#   sbatch slurm/train_4node.sh [extra `vmas fit` options]
#   sbatch -p gpu -A myproject --nodes=2 --time=2-00:00:00 slurm/train_4node.sh
#   CONFIG="configs/vmas.yaml configs/cluster/fsdp.yaml" RUN_DIR=runs/vmas-fsdp sbatch slurm/train_4node.sh \
#     --model.optim.optimizer adamw --model.optim.lr LR    # FSDP2: D-Adapt Adam does not run sharded
#
# Knobs (never edit this file: pass sbatch options, which override the #SBATCH lines, or env vars;
# sbatch exports the submitting environment to the job):
#   partition/account/time  sbatch -p/-A/--time, or SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT
#   nodes, GPUs, CPUs       sbatch --nodes, --ntasks-per-node (= GPUs per node), --gpus-per-node, --cpus-per-task
#   CONFIG       one or more LightningCLI configs, space-separated, merged in order [configs/vmas.yaml]
#                (configs/cluster/fsdp.yaml switches DDP to FSDP2 for larger decoders)
#   RUN_DIR      fixed folder of this run: logs, config.yaml, checkpoints/, hpc_ckpt_*.ckpt
#                [runs/$SLURM_JOB_NAME]; a (re)start resumes from the newest checkpoint in it
#   ACCELERATOR  gpu | cpu [gpu]            DEVICES  processes per node [$SLURM_NTASKS_PER_NODE]
#   NODES        nodes [$SLURM_JOB_NUM_NODES] EXTRA_ARGS more `vmas fit` options (word-split), e.g.
#                "--data.root s3://bucket/disco-mv --trainer.max_steps 100000"
#   VMAS         the vmas command [vmas]      PYTHON   Python with vmas_lightning installed [python]
#   NCCL_*       passed through; defaults below. Multi-node NCCL tips:
#                NCCL_SOCKET_IFNAME=ib0 (or the interface between nodes) when the default picks the
#                wrong one, NCCL_IB_HCA=mlx5 to pick InfiniBand adapters, NCCL_IB_DISABLE=1 on
#                Ethernet-only clusters, NCCL_DEBUG=INFO to see the rings/trees NCCL builds.
# Preemption and time limits: SLURM sends SIGUSR1 90 s before the end; Lightning
# (SLURMEnvironment(auto_requeue=True), its default) saves $RUN_DIR/hpc_ckpt_N.ckpt and requeues the
# job. After a crash, node failure or `scontrol requeue` the job resumes from
# $RUN_DIR/checkpoints/last.ckpt (written atomically). Output is appended to slurm-<name>-<jobid>.out.
#
#SBATCH --job-name=vmas
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --signal=SIGUSR1@90
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

CONFIG=${CONFIG:-configs/vmas.yaml}
RUN_DIR=${RUN_DIR:-runs/${SLURM_JOB_NAME:-vmas}}
ACCELERATOR=${ACCELERATOR:-gpu}
NODES=${NODES:-${SLURM_JOB_NUM_NODES:-1}}
DEVICES=${DEVICES:-${SLURM_NTASKS_PER_NODE:-1}}
VMAS=${VMAS:-vmas}
PYTHON=${PYTHON:-python}

# A hung collective becomes an error (and a requeue) instead of an idle allocation.
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

mkdir -p "$RUN_DIR"
CKPT_PATH=$("$PYTHON" -m vmas_lightning.checkpointing "$RUN_DIR")
echo "vmas job ${SLURM_JOB_ID:-?} start ${SLURM_RESTART_COUNT:-0}: ${NODES} node(s) x ${DEVICES} ${ACCELERATOR}," \
     "run dir ${RUN_DIR}, resume from ${CKPT_PATH}"

CONFIG_ARGS=()
for config in $CONFIG; do CONFIG_ARGS+=(--config "$config"); done

# The logger writes straight into RUN_DIR, so ModelCheckpoint's folder is $RUN_DIR/checkpoints on
# every restart (the default one moves with the logger's version_N).
# shellcheck disable=SC2086  # EXTRA_ARGS is word-split on purpose
srun --kill-on-bad-exit=1 "$VMAS" fit "${CONFIG_ARGS[@]}" \
  --trainer.accelerator "$ACCELERATOR" \
  --trainer.num_nodes "$NODES" \
  --trainer.devices "$DEVICES" \
  --trainer.default_root_dir "$RUN_DIR" \
  --trainer.logger lightning.pytorch.loggers.TensorBoardLogger \
  --trainer.logger.save_dir "$RUN_DIR" \
  --trainer.logger.name "" \
  --trainer.logger.version "" \
  --ckpt_path "$CKPT_PATH" \
  ${EXTRA_ARGS:-} "$@"
