#!/usr/bin/env bash
# `make demo-model`: remake the committed demo assets from scratch: the mel_rvq codec and demo_style
# evaluator (checkpoints/demo/{mel_rvq,style_net}.pt), the demo training data (seed 0), and the demo
# model (checkpoints/demo/model.ckpt, EMA weights only) in two stages: 4,000 steps on the shards'
# frames as stored (configs/demo.yaml with data.augment off), then 1,000 steps from those weights
# with the upload augmentations (configs/demo_robust.yaml). Wall time: see README ("The demo model").
# STAGE=2 runs the second stage alone, from STAGE1 (default: runs/demo-model/stage1.ckpt).
set -euo pipefail
VMAS=${VMAS:-vmas}
CONFIG=${CONFIG:-configs/demo.yaml}
RUN_DIR=${RUN_DIR:-runs/demo-model}
OUT=${OUT:-checkpoints/demo}
NUM_TRAIN=${NUM_TRAIN:-6000}
STAGE=${STAGE:-1}
STAGE1=${STAGE1:-$RUN_DIR/stage1.ckpt}

last_checkpoint() { ls "$1"/lightning_logs/version_*/checkpoints/last.ckpt | tail -n 1; }

start=$(date +%s)
if [ "$STAGE" = 1 ]; then
  "$VMAS" demo-assets --config "$CONFIG" --out "$OUT" --seed 0
  rm -rf "$RUN_DIR"
  "$VMAS" demo-data --config "$CONFIG" --seed 0 --out "$RUN_DIR/data" --num-train "$NUM_TRAIN" --num-val 64 --num-test 16
  "$VMAS" fit --config "$CONFIG" --data.root "$RUN_DIR/data" --trainer.default_root_dir "$RUN_DIR" \
    --trainer.enable_progress_bar false --model.num_audio_samples 0 --data.augment.enabled false
  "$VMAS" export --ckpt "$(last_checkpoint "$RUN_DIR")" --out "$STAGE1"
fi
rm -rf "$RUN_DIR/robust"
"$VMAS" fit --config "$CONFIG" --config configs/demo_robust.yaml --data.root "$RUN_DIR/data" \
  --trainer.default_root_dir "$RUN_DIR/robust" --trainer.enable_progress_bar false --model.num_audio_samples 0 \
  --model.init_from "$STAGE1"
"$VMAS" export --ckpt "$(last_checkpoint "$RUN_DIR/robust")" --out "$OUT/model.ckpt"
echo "demo model remade in $(( ($(date +%s) - start) / 60 )) minutes: $OUT/model.ckpt"
