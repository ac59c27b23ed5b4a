#!/usr/bin/env bash
# Curate raw videos into DISCO-MV shards on a SLURM cluster: an array job over input shards, then a
# merge job that runs only when every array task succeeded (--dependency=afterok).
#
#   INPUT=/data/disco10m/manifest.csv OUTPUT=/data/disco-mv bash slurm/prepare_array.sh
#   NUM_SHARDS=256 WORKERS=32 PARTITION=cpu ACCOUNT=myproject bash slurm/prepare_array.sh --split val
#
# Run it with bash (it submits both jobs itself); extra arguments go to every `vmas prepare` task.
# Knobs (env vars, [default]):
#   INPUT        inputs, space-separated: files, folders, globs, .csv/.jsonl manifests (required)
#   OUTPUT       dataset folder; task I writes OUTPUT/shard-0000I-of-NNNNN/, the merge OUTPUT/<split>/ (required)
#   CONFIG       training config deciding clip geometry and codec [configs/vmas.yaml]
#   NUM_SHARDS   array tasks [64]              MAX_RUNNING  array tasks running at once [32]
#   WORKERS      processes per task [$SLURM_CPUS_PER_TASK in the task, else 16]
#   CPUS         --cpus-per-task [16]          MEM          --mem per task [64G]
#   SEPARATOR    htdemucs | none [htdemucs]    EMBEDDER     clip | pixel_stats [clip]
#   TIMEOUT_S    per-video time limit [600]    TIME         --time per task [12:00:00]
#   PARTITION, ACCOUNT   sbatch -p / -A (unset: the cluster's defaults)
#   GPUS_PER_TASK  GPUs per task for CLIP and Demucs [0]
#   VMAS         the vmas command [vmas]       LOG_DIR      slurm logs [$OUTPUT/logs]
# Tasks are resumable: resubmitting (or `scontrol requeue`) skips videos already in a shard's
# report.jsonl, so a failed or preempted task just runs again. Each task's report lists every
# kept, rejected and failed video; the merge joins the reports into OUTPUT/report.jsonl.
set -euo pipefail

: "${INPUT:?set INPUT to the videos, folders, globs or manifests to curate}"
: "${OUTPUT:?set OUTPUT to the dataset folder}"
CONFIG=${CONFIG:-configs/vmas.yaml}
NUM_SHARDS=${NUM_SHARDS:-64}
MAX_RUNNING=${MAX_RUNNING:-32}
CPUS=${CPUS:-16}
MEM=${MEM:-64G}
TIME=${TIME:-12:00:00}
SEPARATOR=${SEPARATOR:-htdemucs}
EMBEDDER=${EMBEDDER:-clip}
TIMEOUT_S=${TIMEOUT_S:-600}
GPUS_PER_TASK=${GPUS_PER_TASK:-0}
VMAS=${VMAS:-vmas}
LOG_DIR=${LOG_DIR:-$OUTPUT/logs}
WORKERS=${WORKERS:-'${SLURM_CPUS_PER_TASK:-16}'}  # single quotes: expanded inside the task
EXTRA_ARGS=""
(($#)) && EXTRA_ARGS=$(printf ' %q' "$@")

mkdir -p "$LOG_DIR"
common=(--parsable --cpus-per-task="$CPUS" --mem="$MEM" --time="$TIME")
[[ -n "${PARTITION:-}" ]] && common+=(--partition="$PARTITION")
[[ -n "${ACCOUNT:-}" ]] && common+=(--account="$ACCOUNT")
gpus=()
[[ "$GPUS_PER_TASK" != 0 ]] && gpus=(--gpus-per-task="$GPUS_PER_TASK")

# shellcheck disable=SC2086  # INPUT is a space-separated list on purpose
task="$VMAS prepare --config $(printf %q "$CONFIG") --input $INPUT --output $(printf %q "$OUTPUT") \
--num-shards $NUM_SHARDS --shard-index \$SLURM_ARRAY_TASK_ID --workers $WORKERS \
--separator $SEPARATOR --embedder $EMBEDDER --timeout-s $TIMEOUT_S$EXTRA_ARGS"

array_job=$(sbatch "${common[@]}" "${gpus[@]}" --job-name=vmas-prepare --requeue \
  --array="0-$((NUM_SHARDS - 1))%$MAX_RUNNING" --output="$LOG_DIR/prepare-%A_%a.out" --wrap="$task")
array_job=${array_job%%;*}
merge_job=$(sbatch --parsable --cpus-per-task=2 --mem=8G --time=02:00:00 --job-name=vmas-prepare-merge \
  ${PARTITION:+--partition="$PARTITION"} ${ACCOUNT:+--account="$ACCOUNT"} \
  --dependency="afterok:$array_job" --output="$LOG_DIR/merge-%j.out" \
  --wrap="$VMAS prepare merge --output $(printf %q "$OUTPUT")")
echo "submitted array job $array_job ($NUM_SHARDS tasks) and merge job ${merge_job%%;*} (after all succeed)"
