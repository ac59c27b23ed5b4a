"""`VMASModule`: the LightningModule that trains, validates, tests and predicts with a `VMASModel`."""
from __future__ import annotations

import logging
import random
from dataclasses import asdict
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch

from vmas_lightning.callbacks import is_sharded
from vmas_lightning.config import ModelConfig
from vmas_lightning.config_file import check_known
from vmas_lightning.errors import VMASError
from vmas_lightning.evaluation import TestEvaluation, TestOutputs
from vmas_lightning.generation.generator import MusicGenerator
from vmas_lightning.generation.sampling import clip_seed
from vmas_lightning.losses import (BeatWeightedCrossEntropy, ContrastiveLoss, soft_music_embedding, token_cross_entropy,
                                   token_music_embedding)
from vmas_lightning.models.vmas import VMASModel
from vmas_lightning.optim import build_optimizer, build_scheduler, check_shardable
from vmas_lightning.registry import AUDIO_CLASSIFIERS, AUDIO_EMBEDDERS


def collect_rng_states() -> dict[str, Any]:
    """The global torch, CUDA, numpy and Python RNG states, keyed as Lightning's checkpoints key them."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
            "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `collect_rng_states` returned (a checkpoint may hold the Python state's tuple as a list)."""
    torch.set_rng_state(states["torch"])
    if states.get("torch.cuda"):
        torch.cuda.set_rng_state_all(states["torch.cuda"])
    np.random.set_state(states["numpy"])
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))


log = logging.getLogger(__name__)
TEXT_PREFIX = "model.text."  # the text parts' weights (`VMASModel.text`)


class VMASModule(L.LightningModule):
    """Video encoder + video-conditioned MusicGen decoder + frozen EnCodec, trained with the
    beat-weighted AR loss and the video-music contrastive loss.

    Its arguments are the fields of `config.ModelConfig` (the `model:` section), by keyword; LightningCLI
    reads them from `ModelConfig(**settings)` below (jsonargparse resolves `**settings` through that call).
    """

    def __init__(self, **settings: Any):
        super().__init__()
        self.save_hyperparameters()
        check_known(ModelConfig, settings, "model")
        self.config = config = ModelConfig(**settings)
        self.model = VMASModel(config.encoder, config.decoder, config.codec, config.sequence, config.cond_dropout,
                               config.activation_checkpointing, config.text, config.text_dropout)
        self.token_loss = BeatWeightedCrossEntropy(config.loss.beat_weighting, config.loss.beat_lambda)
        AUDIO_EMBEDDERS.expand(config.evaluation.embedder)  # a wrong option stops `vmas fit` too, not only `vmas test`
        AUDIO_CLASSIFIERS.expand(config.evaluation.classifier)
        self.contrastive = (
            ContrastiveLoss(
                music_dim=self.model.codec.codebook_embeddings().shape[-1],
                video_dim=self.model.encoder.out_dim,
                **asdict(config.loss.contrastive),
            )
            if config.loss.alpha > 0
            else None
        )
        self._audio_batch: dict[str, Any] | None = None
        self._resumed_rng_states: dict[str, Any] | None = None

    # ------------------------------------------------------------------ resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the RNG states so a resumed run draws the same dropout and null-condition masks
        (numpy's state as a tensor, so the checkpoint still loads with `weights_only=True`), and
        what rebuilds each part without its pretrained source (the parts' `rebuild_options()`, e.g.
        the decoder's transformers config), so that inference needs nothing but the checkpoint."""
        states = collect_rng_states()
        kind, keys, *rest = states["numpy"]
        states["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), *rest)
        checkpoint["rng_states"] = states
        parts = {"encoder": self.model.encoder, "decoder": self.model.decoder, "codec": self.model.codec,
                 "text": self.model.text.conditioner if self.model.text is not None else None}
        checkpoint["rebuild_options"] = {key: part.rebuild_options() for key, part in parts.items()
                                         if hasattr(part, "rebuild_options")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for optimizer_state in checkpoint.get("optimizer_states", []):
            for state in optimizer_state["state"].values():  # the contrastive logit_scale's, saved when it was 0-d
                state.update({k: v.reshape(1) for k, v in state.items() if k != "step" and torch.is_tensor(v) and v.ndim == 0})
        states = checkpoint.get("rng_states")
        if states is not None:
            kind, keys, *rest = states["numpy"]
            states = {**states, "numpy": (kind, keys.numpy().astype("uint32"), *rest)}
        self._resumed_rng_states = states

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Restored here, not at load time: loader start-up between the two draws from the RNG.
        if self._resumed_rng_states is not None:
            set_rng_states(self._resumed_rng_states)
            self._resumed_rng_states = None

    # ------------------------------------------------------------------ training
    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Loss terms for one batch: `loss`, `loss_ar`, `loss_contrastive`, `contrastive_top1`, `beat_share`."""
        tokens = batch["tokens"]
        features = self.model.encode_video(batch["video"])
        logits = self.model(features, tokens, captions=batch.get("caption"))
        overlap = batch["overlap"]
        out = {"loss_ar": self.token_loss(logits, tokens, overlap), "beat_share": overlap.mean()}
        out["loss"] = out["loss_ar"]
        if self.contrastive is not None:
            music = soft_music_embedding(logits, self.model.codec.codebook_embeddings())
            out["loss_contrastive"], out["contrastive_top1"] = self.contrastive(music, features.mean(dim=1))
            out["loss"] = out["loss"] + self.config.loss.alpha * out["loss_contrastive"]
        return out

    def _log_losses(self, stage: str, losses: dict[str, torch.Tensor], batch_size: int) -> None:
        on_step = stage == "train"
        for name, value in losses.items():
            self.log(f"{stage}/{name}", value.detach(), on_step=on_step, on_epoch=not on_step,
                     prog_bar=name == "loss", batch_size=batch_size, sync_dist=not on_step)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.compute_losses(batch)
        self._log_losses("train", losses, batch["tokens"].shape[0])
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        losses = self.compute_losses(batch)
        losses.update({name: per_clip.nanmean() for name, per_clip in self.video_reliance(batch).items()})
        self._log_losses("val", losses, batch["tokens"].shape[0])
        if batch_idx == 0:
            self._audio_batch = {k: batch[k][: self.config.num_audio_samples] for k in ("id", "video", "caption") if k in batch}

    @torch.no_grad()
    def video_reliance(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-clip `[B]` plain (unweighted) cross-entropies of the batch's tokens given its own video
        (`ce`), another clip's video (`ce_shuffled_video`: the batch's videos rolled by one) and the
        null condition (`ce_null`); and, given its own video, `ce` split at the steps that beat
        weighting weights up (`ce_beats`: overlap o_t = 1) and the others (`ce_off_beats`), NaN for a
        clip without such steps. A model that follows the video has `ce` clearly below the other two."""
        tokens = batch["tokens"]
        features = self.model.encode_video(batch["video"])
        keep = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)

        def per_step(cond: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:  # [B, T], mean over the K codebooks
            return token_cross_entropy(self.model(cond, tokens, drop_condition=drop), tokens).mean(dim=1)

        def mean_where(values: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
            return (values * steps).sum(dim=1) / steps.sum(dim=1)

        own = per_step(features, keep)
        on_beats = (batch["overlap"] > 0).to(own.dtype)
        return {
            "ce": own.mean(dim=1),
            "ce_shuffled_video": per_step(features.roll(1, dims=0), keep).mean(dim=1),
            "ce_null": per_step(features, ~keep).mean(dim=1),
            "ce_beats": mean_where(own, on_beats),
            "ce_off_beats": mean_where(own, 1 - on_beats),
        }

    def on_validation_epoch_end(self) -> None:
        """Generate a few validation clips and log them to TensorBoard."""
        batch, self._audio_batch = self._audio_batch, None
        writer = getattr(self.logger, "experiment", None)
        if batch is None or self.config.num_audio_samples <= 0 or self.trainer.sanity_checking or not hasattr(writer, "add_audio"):
            return
        audio = self.generate(batch["video"], batch["id"], batch.get("caption")).float().cpu()
        if hasattr(self.model.decoder, "release_static_decoders"):  # training goes on: give the cache's memory back
            self.model.decoder.release_static_decoders()
        for clip_id, wav in zip(batch["id"], audio):
            writer.add_audio(f"val_audio/{clip_id}", wav[0], self.global_step, self.model.codec.sample_rate)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, video: torch.Tensor, ids: Sequence[str] | None = None,
                 captions: Sequence[str] | None = None) -> torch.Tensor:
        """Music for `video [B, 3, F, H, W]` (uint8, or float in [0, 1]) -> waveform `[B, 1, N]` at the codec rate.

        With clip `ids`, each clip samples from its own seed (`generation.seed` and the id), so its
        music does not depend on the batch it is in or on how many devices share the work. A model
        with text follows `captions` as `evaluation.text_from` says (`none`: video only); a model
        without text ignores them.
        """
        config = self.config.generation
        seeds = None if ids is None else [clip_seed(config.seed, str(clip_id)) for clip_id in ids]
        if self.model.text is None or self.config.evaluation.text_from == "none":
            captions = None
        tokens = MusicGenerator(self.model, config).generate(video, seeds=seeds, captions=captions)
        return self.model.codec.decode(tokens)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Generated music for a batch; `generation.writer.MusicWriter` writes it to files."""
        prediction = {"id": batch["id"], "audio": self.generate(batch["video"], batch["id"], batch.get("caption")),
                      "sample_rate": self.model.codec.sample_rate}
        if "video_path" in batch:
            prediction["video_path"] = batch["video_path"]
        return prediction

    # ------------------------------------------------------------------ test
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer.gradient_clip_val is not None:
            raise VMASError(f"trainer.gradient_clip_val {self.trainer.gradient_clip_val} is not used: gradient clipping is "
                            "set by model.optim.grad_clip (0 turns it off)")
        if stage == "fit" and self.config.init_from is not None and self.trainer.ckpt_path is None:  # resuming: the checkpoint's
            self.load_initial_weights(self.config.init_from)

    def configure_callbacks(self) -> list[L.Callback]:
        """`vmas test`'s scoring (`evaluation.TestEvaluation`, as `model.evaluation` says); it acts in test only."""
        return [TestEvaluation(self.config.evaluation)]

    def load_initial_weights(self, path: str) -> None:
        """Copy the weights of checkpoint `path` into this module (`init_from`); one line when they do not fit.
        A video-only checkpoint may start a model with text: its text parts (`model.text.*`, none of which
        it has) start untrained, and every other weight must be in it."""
        from vmas_lightning.generation.checkpoint import read_checkpoint

        weights = read_checkpoint(path)["state_dict"]
        text_parts = [key for key in self.state_dict() if key.startswith(TEXT_PREFIX)]
        gains_text = not any(key.startswith(TEXT_PREFIX) for key in weights)
        try:
            missing, unexpected = self.load_state_dict(weights, strict=not gains_text)
            if unexpected or set(missing) - set(text_parts):
                raise RuntimeError(f"missing {sorted(set(missing) - set(text_parts))[:3]}, unexpected {unexpected[:3]}")
        except RuntimeError as err:
            raise VMASError(f"model.init_from {path}: its weights do not fit this config's model "
                            f"({' '.join(str(err).split())[:300]})") from None
        if text_parts and gains_text:
            log.info("model.init_from %s: a video-only model; the %d text tensors start untrained", path, len(text_parts))

    def retrieval_features(self, video: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`video [B, 3, F, H, W]`, reference `tokens [B, K, T]` -> pooled video and music features
        `[B, E]` in the contrastive space (`ContrastiveLoss.embed`: projected and normalised as the loss
        compares them), or None without it (the video is then not encoded).

        The music side embeds the reference tokens (`token_music_embedding`, the one-hot case of the
        soft embedding of Eq. 2).
        """
        if self.contrastive is None:
            return None
        features = self.model.encode_video(video)  # [B, S, D]
        music = token_music_embedding(tokens, self.model.codec.codebook_embeddings())  # codebooks [K, V, Dc]
        music, video = self.contrastive.embed(music, features.mean(dim=1))
        return video, music

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> TestOutputs:
        """The batch's music, its retrieval features and cross-entropies; `TestEvaluation` scores them."""
        generated = self.generate(batch["video"], batch["id"], batch.get("caption")).float()[..., : batch["audio"].shape[-1]]
        return {"generated": generated, "retrieval": self.retrieval_features(batch["video"], batch["tokens"]),
                "cross_entropy": self.video_reliance(batch)}

    # ------------------------------------------------------------------ sharding
    def configure_model(self) -> None:
        """FSDP2 under Lightning's `ModelParallelStrategy` (configs/cluster/fsdp.yaml), nothing otherwise:
        `fully_shard` over all ranks of each of `sharding_units()` and then of the rest, this module,
        whose parameters are gathered for the methods that compute with them. Parameters, gradients,
        optimizer states and `callbacks.EMA` are sharded; the maths is DDP's (fp32 parameters are
        gathered and autocast casts them, gradients are reduced in fp32)."""
        if self.device_mesh is None or is_sharded(self):
            return
        from torch.distributed import get_world_size
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        mesh = init_device_mesh(self.device_mesh.device_type, (get_world_size(),), mesh_dim_names=("shard",))
        for unit in self.sharding_units():
            fully_shard(unit, mesh=mesh)
        fully_shard(self, mesh=mesh)
        for method in ("compute_losses", "video_reliance", "generate", "retrieval_features"):
            register_fsdp_forward_method(self, method)

    def sharding_units(self) -> list[torch.nn.Module]:
        """The FSDP units besides this module: each decoder layer and encoder block (the parts'
        `checkpoint_units()`; an encoder without them stays in this module's unit)."""
        return [unit for part in (self.model.encoder, self.model.decoder)
                for unit in (part.checkpoint_units() if hasattr(part, "checkpoint_units") else [])]

    # ------------------------------------------------------------------ optimisation
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip the gradient norm at `optim.grad_clip` (one place for it: the optimisation config)."""
        if self.config.optim.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.config.optim.grad_clip, gradient_clip_algorithm="norm")

    def lr_scales(self) -> dict[str, float]:
        """Parameter-name prefix -> multiplier of `optim.lr` (`encoder_lr_scale`, `decoder_lr_scale`); the
        rest (text conditioner, null conditions, contrastive heads) trains at `optim.lr`."""
        optim = self.config.optim
        return {"model.encoder.": optim.encoder_lr_scale, "model.decoder.": optim.decoder_lr_scale}

    def configure_optimizers(self):
        if is_sharded(self):
            check_shardable(self.config.optim)
        optimizer = build_optimizer(self, self.config.optim, self.lr_scales())
        scheduler = build_scheduler(optimizer, self.config.optim, self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
