"""`MusicGenerator`: tokens for a video of any length with a `VMASModel`.

Sampling follows MusicGen: the K codebooks are interleaved with the delay pattern (codebook k
shifted right by k steps), so T tokens take T + K - 1 decoder steps, and positions outside a
codebook's span are forced to the pad token. Classifier-free guidance runs the conditions and the
learned null condition as one batch (`guidance_rows`): with a caption, each condition pulls on its
own, `null + cfg_scale * (video - null) + text_cfg_scale * (text - null)`, as composed guidance does
(every term is one the model was trained on: video only, text only, neither). A video longer than the window is covered by
overlapping windows: each window is encoded on its own frames (the clip length the encoder was
built for) and continues the last tokens of the previous window as a prompt.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from vmas_lightning.errors import VMASError
from vmas_lightning.config import GenerationConfig
from vmas_lightning.generation.sampling import Generators, make_generator, sample_next_token
from vmas_lightning.models.codecs.delay import apply_delay, revert_delay
from vmas_lightning.models.text_condition import no_text


@dataclass(frozen=True)
class GuidanceRow:
    """One condition of the guided batch: the video or the null video, the caption or the null text, and
    its weight in `null + sum(weight * (row - null))` (the null row itself has none)."""

    video: bool
    text: bool
    weight: float


def guidance_rows(cfg_scale: float, text_cfg_scale: float, with_text: bool) -> list[GuidanceRow]:
    """The rows a step runs, the null row last when there is guidance: video (weight `cfg_scale`) and,
    `with_text`, the caption alone (weight `text_cfg_scale`); a row of weight 0 is not run. Without text
    and at `cfg_scale` 1: the video row alone (no guidance, half the work)."""
    rows = [GuidanceRow(True, False, cfg_scale)]
    if with_text:
        rows.append(GuidanceRow(False, True, text_cfg_scale))
    rows = [row for row in rows if row.weight != 0]
    if rows == [GuidanceRow(True, False, 1.0)]:
        return rows
    return [*rows, GuidanceRow(False, False, 0.0)]


@dataclass(frozen=True)
class Window:
    """Token span `[start, end)` of one window; the first `prompt` tokens come from the previous one."""

    start: int
    end: int
    prompt: int


class MusicGenerator:
    """Generate EnCodec tokens for videos with a `VMASModel`.

    Args:
        model: the network (`encode_video`, `null_features`, `decoder`, `sequence`).
        config: sampling and windowing settings.
        progress: show a tqdm bar over windows and token steps.
        on_step: called after every decoder step with (steps done, steps in all), e.g. for a web page's progress bar.
    """

    def __init__(self, model, config: GenerationConfig | None = None, progress: bool = False,
                 on_step: Optional[Callable[[int, int], None]] = None):
        self.model = model
        self.config = config or GenerationConfig()
        self.progress = progress
        self.on_step = on_step

    @property
    def sequence(self):
        return self.model.sequence

    def plan_windows(self, num_tokens: int) -> list[Window]:
        """Windows covering `num_tokens` tokens: the training length each, overlapping by
        `overlap_s`; the last one ends exactly at `num_tokens` (so its prompt may be longer)."""
        seq = self.sequence
        if self.config.window_s is not None and self.config.window_s > seq.duration_s:
            raise VMASError(f"generation: window_s {self.config.window_s} exceeds the {seq.duration_s}-s clips the encoder takes")
        length = seq.tokens_for(self.config.window_s or seq.duration_s)
        if num_tokens <= length:
            return [Window(0, num_tokens, 0)]
        stride = length - seq.tokens_for(self.config.overlap_s)
        if stride < 1:
            raise VMASError(f"generation: overlap_s {self.config.overlap_s} must be shorter than the window ({length / seq.token_rate} s)")
        windows = [Window(0, length, 0)]
        while windows[-1].end < num_tokens:
            start = min(windows[-1].start + stride, num_tokens - length)
            windows.append(Window(start, start + length, windows[-1].end - start))
        return windows

    @torch.no_grad()
    def generate(
        self, video: torch.Tensor, duration_s: Optional[float] = None, seeds: Optional[Sequence[int]] = None,
        captions: Optional[Sequence[str]] = None,
    ) -> torch.Tensor:
        """Tokens `[B, K, T]` for `video [B, 3, F, H, W]` at the model's fps: float in [0, 1], or
        uint8 (converted one window at a time, so long videos stay small in memory).

        `duration_s` defaults to F / fps; T = `sequence.tokens_for(duration_s)`. `seeds` (one per
        item) gives each item its own generator instead of the config's one seed for the batch.
        `captions` (one per item; an empty one: no text) guide the music with `text_cfg_scale` on a
        model with text; a model without text refuses them.
        """
        seq = self.sequence
        duration_s = video.shape[2] / seq.fps if duration_s is None else duration_s
        num_tokens = seq.tokens_for(duration_s)
        if num_tokens < 1:
            raise VMASError(f"a video of {duration_s:.3f} s is too short to generate music for")
        device = next(self.model.parameters()).device
        video = video.to(device)
        if seeds is not None:
            rng = [make_generator(seed, device) for seed in seeds]
        else:
            rng = make_generator(self.config.seed, device)
        text = self.caption_memory(captions, video.shape[0])
        null_text = self.model.text_memory(None, video.shape[0])  # once for every window; None without text
        windows = self.plan_windows(num_tokens)
        steps = sum(w.end - w.start - w.prompt + seq.num_codebooks - 1 for w in windows)
        tokens = torch.zeros(video.shape[0], seq.num_codebooks, num_tokens, dtype=torch.long, device=device)
        with tqdm(total=steps, unit="step", disable=not self.progress, leave=False) as bar:
            done = 0

            def tick() -> None:
                nonlocal done
                done += 1
                bar.update(1)
                if self.on_step is not None:
                    self.on_step(done, steps)

            for index, window in enumerate(windows):
                bar.set_description(f"window {index + 1}/{len(windows)}")
                features = self.window_features(video, window)
                prompt = tokens[:, :, window.start : window.start + window.prompt]
                tokens[:, :, window.start : window.end] = self.generate_window(
                    features, prompt, window.end - window.start, rng, tick, text, null_text
                )
        return tokens

    def caption_memory(self, captions: Optional[Sequence[str]], batch: int) -> Optional[torch.Tensor]:
        """The captions' text memory `[B, L, width]`, or None when there is no caption to follow (none given,
        all empty, or `text_cfg_scale` 0 with the model's text parts unused); one line for captions given
        to a model without text."""
        if captions is None or all(no_text(caption) for caption in captions):
            return None
        if self.model.text is None:
            raise VMASError("this model has no text conditioning (it was trained without model.text): "
                            "generate without a caption")
        if len(captions) != batch:
            raise VMASError(f"{len(captions)} captions for {batch} videos")
        return None if self.config.text_cfg_scale == 0 else self.model.text_memory(captions, batch)

    def window_features(self, video: torch.Tensor, window: Window) -> torch.Tensor:
        """Encoder features `[B, S', D]` of the frames under `window`.

        The encoder takes exactly `sequence.num_frames` frames (its positional embeddings are
        sized for them): a shorter window is padded by holding its last frame, and only the
        features of real frames are kept, so the music is conditioned on what is on screen.
        """
        seq = self.sequence
        first = min(seq.frames_for(window.start / seq.token_rate), video.shape[2] - 1)
        count = min(seq.frames_for((window.end - window.start) / seq.token_rate), seq.num_frames)
        clip = video[:, :, first : first + count]  # uint8 stays uint8 up to the encoder
        real = clip.shape[2]
        hold = clip[:, :, -1:].expand(-1, -1, seq.num_frames - real, -1, -1)
        features = self.model.encode_video(torch.cat([clip, hold], dim=2))
        return features[:, : math.ceil(real / self.model.frames_per_feature)]

    @torch.no_grad()
    def generate_window(
        self,
        features: torch.Tensor,
        prompt: torch.Tensor,
        num_tokens: int,
        rng: Generators = None,
        tick: Optional[Callable[[], None]] = None,
        text: Optional[torch.Tensor] = None,
        null_text: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Continue `prompt [B, K, P]` to `num_tokens` tokens conditioned on `features [B, S, D]` (and the
        captions' memory `text [B, L, width]`, `caption_memory`) -> `[B, K, num_tokens]` (the prompt
        included); `tick()` is called after each decoder step. A model with text also takes the null text
        `null_text [B, L, width]` (`model.text_memory(None, B)`; made here when not given)."""
        cfg = self.config
        decoder = self.model.decoder
        batch, num_codebooks, prompt_len = prompt.shape
        num_steps = num_tokens + num_codebooks - 1
        pad = decoder.pad_token_id
        rows = guidance_rows(cfg.cfg_scale, cfg.text_cfg_scale, text is not None)
        null = self.model.null_features(batch, features.shape[1]).to(features)
        cond = torch.cat([features if row.video else null for row in rows])
        memory = None
        if self.model.text is not None:  # a model with text always has text memory: the null text when there is none
            null_text = self.model.text_memory(None, batch) if null_text is None else null_text
            memory = torch.cat([text if row.text else null_text for row in rows])

        # Delayed layout: codebook k holds token t at step t + k; the prompt and the pad cells are known.
        tokens = prompt.new_full((batch, num_codebooks, num_tokens), pad)
        tokens[:, :, :prompt_len] = prompt
        is_prompt = torch.arange(num_tokens, device=prompt.device) < prompt_len
        known = apply_delay(is_prompt.expand(1, num_codebooks, -1), True)[0]  # [K, num_steps]
        bos = prompt.new_full((batch, num_codebooks, 1), pad)
        sequence = torch.cat([bos, apply_delay(tokens, pad)], dim=2)  # position j + 1 holds delayed step j
        run = self.decode_function(cond, num_steps + 1, memory)
        fed = 0
        for step in range(prompt_len, num_steps):
            inputs = sequence[:, :, fed : step + 1]
            logits = run(inputs.repeat(len(rows), 1, 1), fed)[:, :, -1].float()
            if len(rows) > 1:
                *conditioned, unconditional = logits.chunk(len(rows))
                guided = unconditional
                for row, conditional in zip(rows, conditioned):
                    guided = guided + row.weight * (conditional - unconditional)
                logits = guided
            sampled = sample_next_token(logits, cfg.top_k, cfg.top_p, cfg.temperature, rng)
            sequence[:, :, step + 1] = torch.where(known[:, step], sequence[:, :, step + 1], sampled)
            if cfg.use_cache:  # the next call feeds only the new step
                fed = step + 1
            if tick is not None:
                tick()
        return revert_delay(sequence[:, :, 1:])

    def decode_function(self, cond: torch.Tensor, length: int, text: Optional[torch.Tensor] = None
                        ) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """`run(input_ids [N, K, L], start) -> logits [N, K, L, V]` for decoder positions start..start + L - 1
        of a window of `length` positions conditioned on `cond [N, S, D]` (and the text memory `text
        [N, L_text, width]` of a model with text): the decoder's forward with
        transformers' dynamic cache (or none), or its static cache (`static_cache`) with its one-position
        steps eager, replayed as a CUDA graph or compiled (`decode_step`); a prompt is fed eagerly."""
        cfg = self.config
        decoder = self.model.decoder
        if not cfg.static_cache:
            past = None

            extra = {} if text is None else {"text": text}

            def run(input_ids: torch.Tensor, start: int) -> torch.Tensor:
                nonlocal past
                logits, cache = decoder(input_ids, cond, past_key_values=past, use_cache=cfg.use_cache, **extra)
                past = cache if cfg.use_cache else None
                return logits

            return run
        if not hasattr(decoder, "static_decoder"):
            raise VMASError(f"generation.static_cache: the decoder {type(decoder).__name__} has no static cache; "
                            "set generation.static_cache false")
        if cfg.decode_step == "cuda_graph" and not cond.is_cuda:
            raise VMASError("generation.decode_step cuda_graph needs a CUDA device; use eager or torch_compile")
        seq = self.sequence
        window = seq.tokens_for(self.config.window_s or seq.duration_s) + seq.num_codebooks  # + BOS and K - 1 delays
        max_cond = math.ceil(seq.num_frames / self.model.frames_per_feature)
        text_length = 0 if text is None else text.shape[1]
        device = cond.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        static = decoder.static_decoder(cond.shape[0], max(window, length), max(max_cond, cond.shape[1]) + text_length, dtype)
        static.reset(cond, text)
        step = static  # decode_step eager
        if cfg.decode_step == "cuda_graph":
            step = static.graphed_step()
        elif cfg.decode_step == "torch_compile":
            step = static.compiled_step()

        def run_static(input_ids: torch.Tensor, start: int) -> torch.Tensor:
            length = input_ids.shape[-1]
            return (step if length == 1 else static)(input_ids, static.key_positions[start : start + length])

        return run_static
