"""`TestEvaluation`: what `vmas test` computes around the model's test step, as a Lightning callback.

`VMASModule.test_step` makes the music and the model's own measurements of a batch (`TestOutputs`);
this callback scores them with an `EvaluationSuite` (FAD, KL, MV-Align, beat alignment, retrieval, the
synthetic task, the cross-entropies), scores the reference rows with the same metrics (the reference
audio itself, its codec round trip, another clip's audio, the music made for another video), writes
the generated audio, and at the end writes `metrics.json` and `clips.csv`, logs the headline numbers
and prints the tables. `VMASModule.configure_callbacks` adds it to every run; it acts in `test` only.
The suites' metric states sync across processes (torchmetrics); their networks never enter a model
checkpoint (they are not the module's).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, TypedDict

import lightning as L
import torch

from vmas_lightning.config import DataConfig, EvaluationConfig
from vmas_lightning.generation.mux import write_wav
from vmas_lightning.metrics.mv_align import VideoPeaks, frames_peaks, source_peaks
from vmas_lightning.metrics.suite import REFERENCE_ROWS, EvaluationSuite, paper_table, results_table
from vmas_lightning.sequence import SequenceConfig

LOGGED = ("fad", "kl", "mv_align", "alignment_z", "onset_alignment_z", "recall@1", "recall@10", "style_accuracy",
          "onset_f1", "ce")


class TestOutputs(TypedDict):
    """What `VMASModule.test_step` returns for a batch of B clips."""

    generated: torch.Tensor  # float [B, 1, N]: the music, cut to the reference's length
    retrieval: Optional[tuple[torch.Tensor, torch.Tensor]]  # video and music features [B, E]; None without the contrastive head
    cross_entropy: dict[str, torch.Tensor]  # `VMASModule.video_reliance`: [B] each


def mv_align_peaks(batch: dict[str, Any], sequence: SequenceConfig, from_source: bool) -> list[VideoPeaks]:
    """MV-Align's video side of each clip of a test batch: by the AV-Align protocol on the clip's span
    of its source video (`source`, `start_s` of the batch) at the native rate and size when
    `from_source` (`evaluation.mv_align_source`) and that file exists here, else on the model-rate frames."""
    peaks = []
    for index, source in enumerate(batch.get("source", [None] * len(batch["id"]))):
        if from_source and source and Path(source).is_file():
            peaks.append(source_peaks(source, float(batch["start_s"][index]), sequence.duration_s))
        else:
            frames = batch["video"][index].permute(1, 2, 3, 0)  # uint8 [F, H, W, 3]
            peaks.append(frames_peaks(frames.cpu().numpy(), sequence.fps))
    return peaks


def data_config(trainer: L.Trainer) -> DataConfig:
    """The run's `data:` section (its defaults when the data does not come from `VMASDataModule`)."""
    config = getattr(trainer.datamodule, "config", None)
    return config if isinstance(config, DataConfig) else DataConfig()


class TestEvaluation(L.Callback):
    """Scores `vmas test`'s generated music (see the module docstring) as `config` says."""

    def __init__(self, config: EvaluationConfig):
        self.config = config
        self.suite: Optional[EvaluationSuite] = None
        self.reference_rows: dict[str, EvaluationSuite] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "test" or self.suite is not None:
            return
        cfg = self.config
        # music beats of the beat alignment as the data's (`data.beats`), on the model's token grid
        beats = dict(beats=data_config(trainer).beats, token_rate=pl_module.model.sequence.token_rate)
        self.suite = EvaluationSuite(cfg.embedder, cfg.classifier, cfg.reference_stats_cache, cfg.reference_set, **beats)
        if cfg.reference_rows:  # the same metrics, sharing the embedder and classifier networks
            self.reference_rows = {row: EvaluationSuite(self.suite.fad.embedder, self.suite.kl.classifier, **beats)
                                   for row in REFERENCE_ROWS}

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for suite in self.suites():
            suite.to(pl_module.device)

    def suites(self) -> list[EvaluationSuite]:
        return [self.suite, *self.reference_rows.values()] if self.suite is not None else []

    def output_dir(self, trainer: L.Trainer) -> Path:
        """`evaluation.output_dir`, else `<log_dir>/test`."""
        configured = self.config.output_dir
        return Path(configured) if configured else Path(trainer.log_dir or trainer.default_root_dir) / "test"

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: TestOutputs,
                          batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        sequence, codec = pl_module.model.sequence, pl_module.model.codec
        generated, reference, retrieval = outputs["generated"], batch["audio"].float(), outputs["retrieval"]
        metas = [json.loads(meta) for meta in batch["meta"]] if "meta" in batch else None
        common = dict(sample_rate=sequence.sample_rate, video_peaks=mv_align_peaks(batch, sequence, self.config.mv_align_source),
                      ids=batch["id"], metas=metas, video_beats=batch["video_beats"])
        self.suite.update(generated, reference, video_features=retrieval[0] if retrieval else None,
                          music_features=retrieval[1] if retrieval else None, cross_entropy=outputs["cross_entropy"], **common)
        if self.reference_rows:
            with torch.no_grad():
                round_trip = codec.decode(codec.encode(reference))[..., : reference.shape[-1]]
            rows = {"ground_truth": reference, "codec_round_trip": round_trip}
            if reference.shape[0] > 1:  # another clip's music / what the model made for another video: rolled by one
                rows["another_clip"] = reference.roll(1, dims=0)
                rows["generated_for_another_video"] = generated.roll(1, dims=0)
            for row, audio in rows.items():
                self.reference_rows[row].update(audio.float(), reference, video_features=None, music_features=None, **common)
        if self.config.save_audio:
            audio_dir = self.output_dir(trainer) / "audio"
            audio_dir.mkdir(parents=True, exist_ok=True)
            for clip_id, wav in zip(batch["id"], generated.cpu().numpy()):
                write_wav(audio_dir / f"{clip_id}.wav", wav[0], sequence.sample_rate)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = self.suite.compute()
        # which frames the model saw: the shards' or the clips' source videos read as `vmas generate` reads files
        metrics["input_path"] = data_config(trainer).test_input
        if pl_module.model.text is not None:  # what the model was given besides the video
            metrics["text_from"] = self.config.text_from
        if self.reference_rows:
            metrics["reference_rows"] = {row: suite.compute() for row, suite in self.reference_rows.items() if suite.clip_rows()}
        out = self.suite.save(self.output_dir(trainer), metrics)
        for name in LOGGED:
            if metrics.get(name) is not None:
                pl_module.log(f"test/{name}", float(metrics[name]), rank_zero_only=True)
        if trainer.is_global_zero:
            print(f"\n{results_table(metrics)}\n")
            if metrics["paper_protocol"]:
                print(f"{paper_table(metrics)}\n")
            print(f"metrics: {out / 'metrics.json'}  ({metrics['num_clips']} clips)")
            if "note" in metrics:
                print(f"note: {metrics['note']}")
        for suite in self.suites():
            suite.reset()
