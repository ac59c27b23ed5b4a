"""`VMASModel`: video encoder -> MusicGen decoder cross-attending to the video (and, with a text
conditioner, to a caption) -> EnCodec tokens."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from vmas_lightning.errors import VMASError
from vmas_lightning.models.codecs.delay import apply_delay, revert_delay
from vmas_lightning.models.text_condition import TextCondition
from vmas_lightning.registry import AUDIO_CODECS, MUSIC_DECODERS, VIDEO_ENCODERS, PluginSpec
from vmas_lightning.sequence import SequenceConfig


def unit_video(video: torch.Tensor) -> torch.Tensor:
    """Video frames as float32 in [0, 1]: uint8 (0-255, as loaders deliver them) divided by 255 on
    the tensor's device; float is returned as it is."""
    return video.float().div(255) if video.dtype == torch.uint8 else video


class VMASModel(nn.Module):
    """The three plugins built from their specs, plus the learned null condition; with `text`, a text
    conditioner whose memory the decoder cross-attends to beside the video (`TextCondition`).

    The encoder gets `num_frames` / `frame_size` from `sequence`; the decoder gets the codec's
    `num_codebooks` / `codebook_size`, the encoder's `out_dim` and the token steps per feature step.
    `sequence`'s codec rates and codebook count are checked against the built codec (one line on a
    mismatch); feature steps are the encoder's (`frames_per_feature`, `num_features`, `feature_rate`).

    Args:
        cond_dropout: probability, per training sample, of replacing its video features by the
            learned null condition (classifier-free guidance).
        text: `TEXT_CONDITIONERS` spec, or None: a video-only model (no text parts, no `text` memory).
        text_dropout: probability, per training sample, of replacing its caption by the learned null
            text, drawn independently of `cond_dropout` (so the model learns video only, text only,
            both and neither).
        activation_checkpointing: recompute each decoder layer and encoder block in backward instead
            of keeping its activations (`enable_activation_checkpointing()` of both plugins; the same
            loss and gradients, dropout included, for about one more forward of compute).
    """

    def __init__(
        self,
        encoder: PluginSpec,
        decoder: PluginSpec,
        codec: PluginSpec,
        sequence: SequenceConfig = SequenceConfig(),
        cond_dropout: float = 0.1,
        activation_checkpointing: bool = False,
        text: Optional[PluginSpec] = None,
        text_dropout: float = 0.3,
    ):
        super().__init__()
        self.codec = AUDIO_CODECS.build(codec)
        sequence.check_codec(self.codec)
        self.sequence = sequence
        self.encoder = VIDEO_ENCODERS.build(encoder, num_frames=sequence.num_frames, frame_size=sequence.frame_size)
        self.decoder = MUSIC_DECODERS.build(
            decoder,
            num_codebooks=self.codec.num_codebooks,
            codebook_size=self.codec.codebook_size,
            cond_dim=self.encoder.out_dim,
            tokens_per_cond_step=sequence.token_rate / self.feature_rate,
        )
        self.cond_dropout = cond_dropout
        if activation_checkpointing:
            for part in self.checkpointed_parts():
                part.enable_activation_checkpointing()
        self.null_condition = nn.Parameter(torch.zeros(self.encoder.out_dim))
        self.text = TextCondition(text, self.decoder.width) if text is not None else None
        self.text_dropout = text_dropout

    @property
    def frames_per_feature(self) -> int:
        """Video frames per encoder output step (the encoder's; efficient Hiera: 2)."""
        return self.encoder.frames_per_feature

    @property
    def num_features(self) -> int:
        """Encoder output steps per clip, S (48)."""
        return self.sequence.num_frames // self.frames_per_feature

    @property
    def feature_rate(self) -> float:
        """Encoder output steps per second (4.8)."""
        return self.sequence.fps / self.frames_per_feature

    def checkpointed_parts(self) -> tuple[nn.Module, nn.Module]:
        """Encoder and decoder, checked to have `checkpoint_units()` and `enable_activation_checkpointing()`."""
        for part in (self.encoder, self.decoder):
            if not (hasattr(part, "checkpoint_units") and hasattr(part, "enable_activation_checkpointing")):
                raise VMASError(f"model.activation_checkpointing: {type(part).__name__} does not support it")
        return self.encoder, self.decoder

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, F, H, W] uint8 (0-255) or float in [0, 1] -> features [B, S, D]."""
        return self.encoder(unit_video(video))

    def null_features(self, batch_size: int, num_steps: int) -> torch.Tensor:
        """The learned null condition as features [batch_size, num_steps, D]."""
        return self.null_condition.expand(batch_size, num_steps, -1)

    def text_memory(self, captions: Optional[Sequence[str]], batch: int, drop: Optional[torch.Tensor] = None
                    ) -> Optional[torch.Tensor]:
        """The decoder's text memory `[batch, L, width]` of `captions` (None or empty: the null text; `drop`,
        bool `[B]`: the null text too); None for a model without text, whatever the captions."""
        return None if self.text is None else self.text(captions, batch, drop)

    def forward(
        self,
        features: torch.Tensor,
        tokens: torch.Tensor,
        drop_condition: Optional[torch.Tensor] = None,
        captions: Optional[Sequence[str]] = None,
        drop_text: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Teacher-forced logits [B, K, T, V]; `logits[:, k, t]` predicts `tokens[:, k, t]`.

        Args:
            features: [B, S, D] video features.
            tokens: [B, K, T] un-delayed codes.
            drop_condition: bool [B], samples whose features become the null condition; None draws
                it with probability `cond_dropout` per sample in training mode (none in eval).
                The null condition gets a (possibly zero) gradient in every training step.
            captions: B captions for a model with text (None, or an empty one: the null text);
                ignored without.
            drop_text: bool [B], samples whose caption becomes the null text; None draws it with
                probability `text_dropout` in training mode, independently of `drop_condition`.
        """
        batch = tokens.shape[0]
        if drop_condition is None and self.training:
            # Drawn even at cond_dropout 0: the null condition stays in the graph, as DDP requires.
            drop_condition = torch.rand(batch, device=features.device) < self.cond_dropout
        if drop_condition is not None:
            null = self.null_features(batch, features.shape[1]).to(features.dtype)
            features = torch.where(drop_condition[:, None, None], null, features)
        if drop_text is None and self.training and self.text is not None:
            drop_text = torch.rand(batch, device=features.device) < self.text_dropout
        text = self.text_memory(captions, batch, drop_text)
        pad = self.decoder.pad_token_id
        delayed = apply_delay(tokens, pad)  # [B, K, T + K - 1]
        bos = delayed.new_full((batch, delayed.shape[1], 1), pad)
        inputs = torch.cat([bos, delayed[:, :, :-1]], dim=2)  # step j sees delayed steps < j
        logits, _ = self.decoder(inputs, features, text=text) if text is not None else self.decoder(inputs, features)
        return revert_delay(logits)
