#!/usr/bin/env bash
# The embedded CPU demo (`make demo`): synthesise demo data from a seed the committed demo model never
# saw, train a short model of its own (to show training runs), evaluate both it and the committed
# model (checkpoints/demo/model.ckpt) on the same held-out clips, and let the committed model put
# music to a demo video. Everything lands under $DEMO_DIR (default runs/demo).
set -euo pipefail
VMAS=${VMAS:-vmas}
DEMO_DIR=${DEMO_DIR:-runs/demo}
CONFIG=${CONFIG:-configs/demo.yaml}
MODEL_CONFIG=${MODEL_CONFIG:-configs/demo_text.yaml}   # stacked on $CONFIG: the committed model takes captions too
MODEL=${MODEL:-checkpoints/demo/model.ckpt}
SEED=${SEED:-2}                 # the committed model and its codec were fitted on seed 0, its recipe compared on 1
SHORT_STEPS=${SHORT_STEPS:-150}

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
# every test clip also as a video file, as an upload comes (30 fps, 256x256, H.264): data/videos/test/
"$VMAS" demo-data --config "$CONFIG" --seed "$SEED" --out "$DEMO_DIR/data" --num-train 64 --num-val 16 --num-test 16
"$VMAS" fit --config "$CONFIG" --data.root "$DEMO_DIR/data" --trainer.default_root_dir "$DEMO_DIR/train" \
  --trainer.max_steps "$SHORT_STEPS" --trainer.val_check_interval "$SHORT_STEPS" --trainer.enable_progress_bar false
SHORT=$(ls "$DEMO_DIR"/train/lightning_logs/version_*/checkpoints/last.ckpt | tail -n 1)
# the committed model through both paths, from the video alone: the shards' frames, and the test clips'
# video files read as `vmas generate` reads a user's file; then from the files with each clip's caption
"$VMAS" test --config "$CONFIG" --data.root "$DEMO_DIR/data" --trainer.default_root_dir "$DEMO_DIR/train" \
  --trainer.enable_progress_bar false --model.evaluation.output_dir "$DEMO_DIR/test-short" --ckpt_path "$SHORT"
for run in committed:shard_frames:none committed-files:video_file:none committed-files-captions:video_file:captions; do
  name=${run%%:*}; rest=${run#*:}
  "$VMAS" test --config "$CONFIG" --config "$MODEL_CONFIG" --data.root "$DEMO_DIR/data" --trainer.default_root_dir "$DEMO_DIR/train" \
    --trainer.enable_progress_bar false --model.evaluation.output_dir "$DEMO_DIR/test-$name" \
    --data.test_input "${rest%%:*}" --model.evaluation.text_from "${rest#*:}" --ckpt_path "$MODEL"
done
VIDEO=$(ls "$DEMO_DIR"/data/videos/test/*.mp4 | head -n 1)
"$VMAS" generate --ckpt "$MODEL" --video "$VIDEO" --out "$DEMO_DIR/generate/$(basename "$VIDEO" .mp4)" \
  --plot "$DEMO_DIR/generate/alignment.png"
# the same video with words for another style's music: the style follows the text, the notes the cuts
TEXT="fast 140 bpm, short hollow square-wave plucks, in D minor pentatonic"
"$VMAS" generate --ckpt "$MODEL" --video "$VIDEO" --out "$DEMO_DIR/generate/$(basename "$VIDEO" .mp4)-techno" \
  --text "$TEXT" --plot "$DEMO_DIR/generate/alignment-techno.png"

echo
echo "Held-out demo clips (seed $SEED): the committed model ($MODEL) from the shards' frames and from the clips'"
echo "video files (30 fps, 256x256 H.264, read as vmas generate reads them), video only and with each clip's caption,"
echo "a ${SHORT_STEPS}-step model trained just now, and reference rows"
"$VMAS" results "$DEMO_DIR/test-committed" "$DEMO_DIR/test-committed-files" "$DEMO_DIR/test-committed-files-captions" \
  "$DEMO_DIR/test-short" \
  --names "committed model (shard frames),committed model,committed model + captions,${SHORT_STEPS}-step model"
cat <<MSG

Demo finished. Outputs:
  committed model     $MODEL   (make demo-model retrains it from scratch)
  short model         $SHORT
  TensorBoard logs    $DEMO_DIR/train   (tensorboard --logdir $DEMO_DIR/train: losses and generated audio)
  metrics             $DEMO_DIR/test-committed/metrics.json (shard frames), $DEMO_DIR/test-committed-files/metrics.json
                      (video files), $DEMO_DIR/test-short/metrics.json
  generated music     $DEMO_DIR/generate/   (mp4 with the committed model's music, wav, alignment.png; *-techno:
                      the same video with --text "$TEXT")
MSG
