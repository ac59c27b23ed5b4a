"""`MusicWriter`: a Lightning prediction writer that saves each generated clip as it is predicted.

Every rank writes its own batches, so `vmas predict` over a dataset writes in parallel on many
devices. Add it to `trainer.callbacks` (`class_path: vmas_lightning.generation.writer.MusicWriter`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from lightning.pytorch.callbacks import BasePredictionWriter

from vmas_lightning.generation.mux import add_extension, mux_audio, write_wav


class MusicWriter(BasePredictionWriter):
    """Write `<output_dir>/<id>.wav` for each clip of a `VMASModule.predict_step` output
    (`{"id": [B], "audio": [B, 1, N], "sample_rate": int}`), and `<output_dir>/<id>.mp4` with the
    music muxed in when the output also names the clip's own video file (`"video_path": [B]`).

    Args:
        output_dir: folder for the files (ids with `/` make subfolders).
        mux: write the muxed video when a source path is known.
        keep_original_audio: keep the source's audio as a second stream of the muxed video.
    """

    def __init__(self, output_dir: str, mux: bool = True, keep_original_audio: bool = False):
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.mux = mux
        self.keep_original_audio = keep_original_audio

    def write_on_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        prediction: dict[str, Any],
        batch_indices: Optional[Sequence[int]],
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        audio = prediction["audio"].float().cpu().numpy()
        sample_rate = int(prediction["sample_rate"])
        sources = prediction.get("video_path") or [None] * len(prediction["id"])
        for clip_id, wav, source in zip(prediction["id"], audio, sources):
            stem = self.output_dir / str(clip_id)
            write_wav(add_extension(stem, ".wav"), wav[0], sample_rate)
            if self.mux and source:
                mux_audio(source, wav[0], sample_rate, add_extension(stem, ".mp4"), self.keep_original_audio)
