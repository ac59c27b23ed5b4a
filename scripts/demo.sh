#!/usr/bin/env bash
# The embedded CPU demo: synthesise paired demo data, train the tiny model, test it, generate music
# for one demo video. Everything lands under $DEMO_DIR (default runs/demo).
set -euo pipefail
VMAS=${VMAS:-vmas}
DEMO_DIR=${DEMO_DIR:-runs/demo}
CONFIG=${CONFIG:-configs/tiny.yaml}

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
"$VMAS" demo-data --config "$CONFIG" --out "$DEMO_DIR/data" --videos "$DEMO_DIR/videos"
"$VMAS" fit --config "$CONFIG" --data.root "$DEMO_DIR/data" --trainer.default_root_dir "$DEMO_DIR/train"
CKPT=$(ls "$DEMO_DIR"/train/lightning_logs/version_*/checkpoints/last.ckpt | tail -n 1)
"$VMAS" test --config "$CONFIG" --data.root "$DEMO_DIR/data" --trainer.default_root_dir "$DEMO_DIR/train" \
  --model.evaluation.output_dir "$DEMO_DIR/test" --ckpt_path "$CKPT"
VIDEO=$(ls "$DEMO_DIR"/videos/*.mp4 | head -n 1)
"$VMAS" generate --ckpt "$CKPT" --video "$VIDEO" --out "$DEMO_DIR/generate/$(basename "$VIDEO" .mp4)" --plot "$DEMO_DIR/generate/alignment.png"

cat <<MSG

Demo finished. Outputs:
  checkpoint        $CKPT
  TensorBoard logs  $(dirname "$(dirname "$CKPT")")   (tensorboard --logdir $DEMO_DIR/train)
  metrics           $DEMO_DIR/test/metrics.json
  generated music   $DEMO_DIR/generate/
MSG
