#!/usr/bin/env bash
# `make demo-model`: remake the committed demo assets from scratch: the mel_rvq codec and demo_style
# evaluator (checkpoints/demo/{mel_rvq,style_net}.pt), the demo training data (seed 0, with captions), and
# the demo model (checkpoints/demo/model.ckpt, EMA weights only) in two stages: video only
# (configs/demo.yaml), then text control from its weights (+ configs/demo_text.yaml). Wall time: see
# README ("The demo model").
set -euo pipefail
VMAS=${VMAS:-vmas}
CONFIG=${CONFIG:-configs/demo.yaml}
TEXT_CONFIG=${TEXT_CONFIG:-configs/demo_text.yaml}
RUN_DIR=${RUN_DIR:-runs/demo-model}
OUT=${OUT:-checkpoints/demo}
NUM_TRAIN=${NUM_TRAIN:-6000}

start=$(date +%s)
"$VMAS" demo-assets --config "$CONFIG" --out "$OUT" --seed 0
rm -rf "$RUN_DIR"
"$VMAS" demo-data --config "$CONFIG" --seed 0 --out "$RUN_DIR/data" --num-train "$NUM_TRAIN" --num-val 64 --num-test 16
"$VMAS" fit --config "$CONFIG" --data.root "$RUN_DIR/data" --trainer.default_root_dir "$RUN_DIR" --trainer.enable_progress_bar false \
  --model.num_audio_samples 0
"$VMAS" export --ckpt "$(ls "$RUN_DIR"/lightning_logs/version_*/checkpoints/last.ckpt | tail -n 1)" --out "$RUN_DIR/video_model.ckpt"
"$VMAS" fit --config "$CONFIG" --config "$TEXT_CONFIG" --data.root "$RUN_DIR/data" --trainer.default_root_dir "$RUN_DIR/text" \
  --trainer.enable_progress_bar false --model.num_audio_samples 0 --model.init_from "$RUN_DIR/video_model.ckpt"
"$VMAS" export --ckpt "$(ls "$RUN_DIR"/text/lightning_logs/version_*/checkpoints/last.ckpt | tail -n 1)" --out "$OUT/model.ckpt"
echo "demo model remade in $(( ($(date +%s) - start) / 60 )) minutes: $OUT/model.ckpt"
