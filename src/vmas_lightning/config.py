"""The typed settings of a run, in one place: `ModelConfig` (the `model:` section: `VMASModule`'s
arguments) with the losses, the optimiser, generation and what `vmas test` computes, and `DataConfig`
(the `data:` section: `VMASDataModule`'s) with the beats and the training augmentations; the clip
geometry is `sequence.SequenceConfig`. LightningCLI parses them (`--print_config` shows them), every
other command through `config_file.load_config`; checkpoints record them. They import nothing from
training, so inference reads a checkpoint's settings without the training code.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, get_args

from vmas_lightning.errors import VMASError
from vmas_lightning.registry import (
    AudioClassifierSpec, AudioCodecSpec, AudioEmbedderSpec, MusicDecoderSpec, OnsetDetectorSpec, OpticalFlowSpec,
    TextConditionerSpec, VideoEncoderSpec,
)
from vmas_lightning.sequence import SequenceConfig

OPTIMIZERS = ("adamw", "dadapt_adam")
OPTIMIZER_IMPLEMENTATIONS = ("for_loop", "foreach", "fused")
# The paper's plugins: what a config that names none builds (`VMASModule`'s defaults).
DEFAULT_PLUGINS = {"encoder": "efficient_hiera", "decoder": "musicgen", "codec": "encodec"}


@dataclass
class ContrastiveConfig:
    """Video-music contrastive loss (Eq. 2). The paper gives neither temperature nor projection size."""

    embed_dim: Optional[int] = 512
    temperature: float = 0.07
    learnable_temperature: bool = True
    gather: str = "global"


@dataclass
class LossConfig:
    """L = L_AR + alpha * L_contrastive, L_AR weighted by w_t = o_t + lambda (Eq. 3-4).

    The overlap o_t comes with the batch (`data.beats.match_window`). The paper gives neither alpha
    nor lambda; ``beat_weighting=False`` and ``alpha=0`` give the AR baseline of Table 5.

    Args:
        alpha: weight of the contrastive loss.
        beat_weighting: weight each step by w_t (False: every step 1).
        beat_lambda: lambda > 0, the weight of steps without overlap (1.0: overlaps count twice).
        contrastive: see `ContrastiveConfig`.
    """

    alpha: float = 0.1
    beat_weighting: bool = True
    beat_lambda: float = 1.0
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)

    def __post_init__(self):
        if not self.beat_lambda > 0:
            raise VMASError(f"model.loss.beat_lambda must be > 0 (steps without overlap would get no loss), "
                            f"got {self.beat_lambda}")


TextSource = Literal["captions", "none"]


@dataclass
class EvaluationConfig:
    """What `vmas test` computes and where it writes it; see docs/EVALUATION.md.

    Args:
        embedder: FAD embedder plugin (`vggish` is the MusicGen protocol).
        classifier: KL classifier plugin (`ast`; the paper's PaSST needs torchaudio).
        output_dir: folder for `metrics.json`, `clips.csv` and the generated audio; None puts them
            in `<log_dir>/test`.
        reference_stats_cache: file caching the FAD reference statistics (embedded once).
        reference_set: name of the reference set in that cache.
        save_audio: write each generated clip as `<output_dir>/audio/<id>.wav`.
        reference_rows: also score, with the same metrics, the reference audio itself (the ideal),
            its codec round trip (the best the model can do through its codec) and the reference
            audio of another clip of the batch (chance for every per-clip metric).
        mv_align_source: compute MV-Align by the AV-Align protocol on the clip's span of its source
            video at the native frame rate and size, where the shard names a source file that exists
            here; false (or no such file): on the model-rate frames, labelled `model_rate_frames`.
        text_from: what a model with text is given besides the video when it generates in `vmas
            test` and `vmas predict`: each clip's caption from the shards (`captions`) or no text
            (`none`: video only); `metrics.json` records it. A model without text ignores it.
    """

    embedder: AudioEmbedderSpec = "vggish"
    classifier: AudioClassifierSpec = "ast"
    output_dir: Optional[str] = None
    reference_stats_cache: Optional[str] = None
    reference_set: Optional[str] = None
    save_audio: bool = True
    reference_rows: bool = True
    mv_align_source: bool = True
    text_from: TextSource = "captions"

    def __post_init__(self):
        if self.text_from not in typing.get_args(TextSource):
            raise VMASError(f"model.evaluation.text_from must be one of {', '.join(typing.get_args(TextSource))}, "
                            f"got '{self.text_from}'")


@dataclass
class OptimConfig:
    """Defaults: MusicGen's recipe, which the paper follows (AdamW, lr by D-Adaptation, cosine with warmup).

    Args:
        optimizer: "dadapt_adam" (D-Adapt Adam, decoupled weight decay; lr is a multiplier of the
            adapted step, 1.0 as in MusicGen) or "adamw" (lr is the learning rate).
        lr: peak learning rate (multiplier for dadapt_adam).
        betas: Adam betas.
        weight_decay: decoupled weight decay of matrices (none on biases, norms and embeddings).
        warmup_steps: linear warmup from lr / warmup_steps to lr.
        max_steps: length of the cosine decay; None: the trainer's estimated number of steps.
        min_lr_ratio: the cosine ends at lr * min_lr_ratio (and stays there).
        grad_clip: gradient-norm clipping value (Trainer `gradient_clip_val`); 0 or None: off.
        encoder_lr_scale: multiplier of `lr` for the video encoder's parameters (1: the paper's single
            learning rate; a smaller one keeps a randomly initialised encoder from collapsing to
            features that are the same for every video, see docs/EVALUATION.md).
        decoder_lr_scale: multiplier of `lr` for the music decoder's parameters (1: the paper's single
            learning rate; a smaller one, with `init_from`, keeps a trained decoder close to what it
            learned while new parts such as the text conditioner learn at `lr`; benchmarks/RESULTS.md,
            "Text and video", has one such text stage).
        implementation: how a step runs over the parameter tensors: `for_loop` (one tensor at a time:
            torch's AdamW with `foreach=False`, the `dadaptation` package's D-Adapt Adam, which waits
            for the GPU twice per tensor), `foreach` (a few kernels per step over lists of tensors:
            torch's AdamW, `vmas_lightning.dadapt_adam.ForeachDAdaptAdam` without a host
            synchronisation) or `fused` (AdamW's single fused kernel; not for dadapt_adam). All three
            take the same steps to float32 rounding (tests/test_optim.py).
    """

    optimizer: str = "dadapt_adam"
    lr: float = 1.0
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_steps: int = 4000
    max_steps: Optional[int] = None
    min_lr_ratio: float = 0.0
    grad_clip: Optional[float] = 1.0
    encoder_lr_scale: float = 1.0
    decoder_lr_scale: float = 1.0
    implementation: Literal["for_loop", "foreach", "fused"] = "foreach"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise VMASError(f"optim: unknown optimizer '{self.optimizer}'; known: {', '.join(OPTIMIZERS)}")
        if self.implementation not in OPTIMIZER_IMPLEMENTATIONS:
            raise VMASError(f"optim: unknown implementation '{self.implementation}'; known: {', '.join(OPTIMIZER_IMPLEMENTATIONS)}")
        if self.optimizer == "dadapt_adam" and self.implementation == "fused":
            raise VMASError("optim: dadapt_adam has no fused implementation; set model.optim.implementation foreach")
        if (self.lr <= 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1 or self.encoder_lr_scale <= 0
                or self.decoder_lr_scale <= 0):
            raise VMASError(
                f"optim: need lr > 0, warmup_steps >= 0, 0 <= min_lr_ratio <= 1, encoder_lr_scale > 0 and "
                f"decoder_lr_scale > 0; got lr={self.lr}, warmup_steps={self.warmup_steps}, "
                f"min_lr_ratio={self.min_lr_ratio}, encoder_lr_scale={self.encoder_lr_scale}, "
                f"decoder_lr_scale={self.decoder_lr_scale}"
            )


DecodeStep = Literal["eager", "cuda_graph", "torch_compile"]


@dataclass
class GenerationConfig:
    """How tokens are sampled and how a video longer than the training window is covered.

    Args:
        top_k: sample among the k most likely tokens (MusicGen's default 250); 0 disables.
        top_p: nucleus sampling, keep the smallest set of tokens whose probability reaches p,
            applied after top-k; 0 disables.
        temperature: logits are divided by it; 0 means greedy (argmax) decoding.
        cfg_scale: classifier-free guidance by the video, `null + cfg_scale * (video - null)` on the
            logits with the model's learned null condition; 1 without a caption disables guidance (and
            halves the work). With a caption, 0 gives music from the text alone.
        text_cfg_scale: guidance by the caption (a model with `model.text`, given one):
            `null + cfg_scale * (video - null) + text_cfg_scale * (text - null)`, each condition
            against the null of both, so each term is one the model was trained on; 0 ignores the
            caption.
        use_cache: reuse the decoder's keys/values between steps (same tokens, much faster).
        static_cache: keep them in a cache preallocated for the whole window, with the video's
            cross-attention keys/values computed once per window, so every step has the same shapes
            (the same tokens as the dynamic cache; what `decode_step` other than eager needs).
        decode_step: how each one-position step of the static cache runs: `eager` (an operation at a
            time), `cuda_graph` (captured once per batch size, then one replay per step instead of a
            kernel launch per operation; CUDA only; the capture costs one step) or `torch_compile`
            (`torch.compile`, on CUDA with CUDA graphs; fused kernels, but the first window of each
            batch size waits for the compilation, a minute or more at full size).
        window_s: seconds generated per window; None uses the model's training duration.
        overlap_s: seconds of music carried from one window into the next as a prompt (the next
            window continues those tokens, with the video features slid to match). The paper does
            not generate beyond 10 s; half the window (5 s of a 10-s window) keeps the music
            continuous at window boundaries for twice the work of a single pass.
        seed: seeds a private `torch.Generator`, so two runs with the same seed give the same
            music; None draws from torch's global generator.
    """

    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    cfg_scale: float = 3.0
    text_cfg_scale: float = 3.0
    use_cache: bool = True
    static_cache: bool = False
    decode_step: DecodeStep = "eager"
    window_s: Optional[float] = None
    overlap_s: float = 5.0
    seed: Optional[int] = None

    def __post_init__(self) -> None:
        problems = []
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 <= self.top_p <= 1.0:
            problems.append(f"top_p must be in [0, 1], got {self.top_p}")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0, got {self.temperature}")
        for name in ("cfg_scale", "text_cfg_scale"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.window_s is not None and self.window_s <= 0:
            problems.append(f"window_s must be > 0, got {self.window_s}")
        if self.overlap_s < 0 or (self.window_s is not None and self.overlap_s >= self.window_s):
            problems.append(f"overlap_s must be >= 0 and shorter than the window, got {self.overlap_s}")
        if self.static_cache and not self.use_cache:
            problems.append("static_cache needs use_cache")
        if self.decode_step not in get_args(DecodeStep):
            problems.append(f"decode_step must be one of {', '.join(get_args(DecodeStep))}, got {self.decode_step!r}")
        elif self.decode_step != "eager" and not self.static_cache:
            problems.append(f"decode_step {self.decode_step} needs static_cache (a dynamic cache changes shape at every step)")
        if problems:
            raise VMASError("generation: " + "; ".join(problems))


Range = tuple[float, float]


@dataclass(frozen=True)
class VideoAugmentConfig:
    """Per-clip augmentations of the training frames (`data.augment`); validation and test frames
    are never augmented. Each clip draws every parameter uniformly from its range (frame rate:
    log-uniformly); a range's identity value (1.0, 0.0) leaves that part out.

    Args:
        enabled: augment the training clips (false: the shard's frames as stored).
        probability: fraction of training clips augmented; the others are left as stored.
        source_fps: frame rates of the virtual source `[low, high]`: slot j shows what `read_video`
            would take from a source at that rate (the last source frame at or before j / fps,
            placed on the stored frames by stochastic rounding of its time, never later than slot
            j's own frame), so a cut can show up to a frame late while its labels stay on the cut;
            null (the default): off. On the demo, [8, 60] lowered onset F1 against the cuts on
            shards and files alike (benchmarks/RESULTS.md, "Through files").
        upscale: source size as a multiple of the model's `[low, high]`: frames are resized up
            (linear) and back down with an area filter, as `read_video` scales a larger file.
        crop: side of a random crop as a fraction of that frame `[low, high]`, resized to the
            model's size (area filter down, linear up, as `read_video`).
        pad: largest total bar width, as a fraction of the side, of a letter- or pillar-box (black
            bars on one axis, split at random between its two sides); 0: off.
        brightness: largest relative change of the level (0.1: x0.9-x1.1).
        contrast: largest relative change of the contrast about the clip's mean.
        saturation: largest relative change of the saturation.
        range_mixup: probability of a colour-range mix-up: full-range pixels read as limited
            (washed out, 16-235) or limited read as full (crushed).
        jpeg_quality: JPEG quality range `[low, high]` each frame is re-encoded at (a stand-in for
            a codec's artefacts); null: off.
        chroma_444: probability of 4:4:4 instead of 4:2:0 chroma in that JPEG.
    """

    enabled: bool = False
    probability: float = 0.8
    source_fps: Optional[Range] = None
    upscale: Range = (1.0, 4.0)
    crop: Range = (0.8, 1.0)
    pad: float = 0.25
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    range_mixup: float = 0.2
    jpeg_quality: Optional[tuple[int, int]] = (30, 95)
    chroma_444: float = 0.5

    def __post_init__(self) -> None:
        problems = []

        def check_range(name: str, value: Optional[Range], low: float, high: float) -> None:
            if value is not None and not (len(value) == 2 and low <= value[0] <= value[1] <= high):
                problems.append(f"{name} must be [low, high] with {low:g} <= low <= high <= {high:g}, got {list(value)}")

        check_range("source_fps", self.source_fps, 1e-3, 1e4)
        check_range("upscale", self.upscale, 1.0, 16.0)
        check_range("crop", self.crop, 0.1, 1.0)
        check_range("jpeg_quality", self.jpeg_quality, 1, 100)
        for name in ("probability", "range_mixup", "chroma_444"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name, high in (("pad", 0.9), ("brightness", 1.0), ("contrast", 1.0), ("saturation", 1.0)):
            if not 0.0 <= getattr(self, name) <= high:
                problems.append(f"{name} must be in [0, {high:g}], got {getattr(self, name)}")
        if problems:
            raise VMASError("data.augment: " + "; ".join(problems))


@dataclass
class BeatConfig:
    """How beats are computed (`data.beats`); the paper gives neither W nor the matching window.

    Every setting but `match_window` and `onset_match_window` decides what `vmas prepare` / `vmas
    demo-data` store, and the shards record them (`data.shards.annotation_settings`); those two act
    when the data is read.

    Args:
        onset_detector: `ONSET_DETECTORS` plugin for music beats: onset_peaks (the strong peaks of the
            onset strength, 1-4 per second), beat_track (librosa's beat tracker), librosa (every
            onset, the paper's detector: so many that nearly every step near a video beat overlaps)
            or madmom.
        optical_flow: `OPTICAL_FLOWS` plugin for video beats (farneback, dis or raft).
        peak_window: W, in token steps: a video beat is the maximum of the W steps centred on it
            (25 steps = 0.5 s, one beat per period of a 120 BPM tempo).
        match_window: a music beat is an overlap when a video beat lies within this many steps
            (5 steps = 0.1 s, about one video frame at 9.6 fps, MV-Align's matching tolerance).
        onset_match_window: the onset alignment score (`beats.onset_alignment`) reads the music's onset
            strength at most this many steps from each video beat (1 step = 20 ms: a cut on an onset
            lands within half a frame of it at 25 fps; at 5 steps dense music has an onset near every
            step, and the score stops telling the video's own music from the same music shifted by a
            beat: benchmarks/RESULTS.md, "Beats on real footage").
        min_flow: smallest flow magnitude (pixels per frame pair at the flow's frame rate) a video
            beat may have, so that a still or near-still clip has none (0.1 as MV-Align's peak
            threshold).
        min_prominence: a video beat must rise above the flow on both sides of it within the window
            by this fraction of its own value (0.5: at least twice the higher of the minima before
            and after it), so the estimator's wobbles on a continuous pan or zoom are no beats; 0
            keeps every local maximum (the paper's definition; the paper gives no threshold).
        flow_fps: frame rate flow is computed at: the source rate divided by the smallest whole
            stride that reaches at most this (frames dropped evenly, never duplicated: 25 fps ->
            12.5, 30 and 60 fps -> 15 for 15.0); None, every pair of consecutive source frames. At
            60 fps a slow pan moves ~0.1 px per frame, below the codec's noise, and the
            magnitude zig-zags; at about 15 fps (close to the paper's 9.6) it is smooth.
    """

    onset_detector: OnsetDetectorSpec = "onset_peaks"
    optical_flow: OpticalFlowSpec = "farneback"
    peak_window: int = 25
    match_window: int = 5
    onset_match_window: int = 1
    min_flow: float = 0.1
    min_prominence: float = 0.5
    flow_fps: Optional[float] = 15.0

    # act when the data is read, not stored in shards
    READ_TIME: ClassVar[tuple[str, ...]] = ("match_window", "onset_match_window")

    def __post_init__(self):
        if self.peak_window < 1:
            raise VMASError(f"beats: peak_window must be >= 1 token step, got {self.peak_window}")
        for name in ("match_window", "onset_match_window"):
            if getattr(self, name) < 0:
                raise VMASError(f"beats: {name} must be >= 0 token steps, got {getattr(self, name)}")
        if not 0 <= self.min_prominence < 1:
            raise VMASError(f"beats: min_prominence must be in [0, 1), got {self.min_prominence}")
        if self.flow_fps is not None and not self.flow_fps > 0:
            raise VMASError(f"beats: flow_fps must be > 0 frames per second (or null: the video's own rate), got {self.flow_fps}")


TestInput = Literal["shard_frames", "video_file"]


@dataclass
class ModelConfig:
    """The `model:` section: what `VMASModule` is built from.

    Args:
        sequence: clip geometry (duration, fps, frame size, codec rates).
        encoder: video encoder plugin, `name` or `{name: ..., options}` (`vmas plugins --options`
            lists the plugins and their options; `--print_config` shows every option).
        decoder: music decoder plugin, likewise.
        codec: audio codec plugin, likewise.
        cond_dropout: fraction of training samples whose video is replaced by the learned null
            condition, for classifier-free guidance.
        text: text conditioner plugin (`words`, `t5`), or null: a video-only model. With one, the
            decoder cross-attends to each clip's caption (from the shards) beside the video, and
            generation takes a caption (`generation.text_cfg_scale`).
        text_dropout: fraction of training samples whose caption is replaced by the learned null
            text, drawn independently of `cond_dropout`.
        activation_checkpointing: recompute each decoder layer and encoder block in backward
            (less activation memory, about one more forward of compute; see `VMASModel`).
        loss, optim, generation, evaluation: see the dataclasses.
        num_audio_samples: validation clips generated and logged to TensorBoard each validation.
        init_from: a checkpoint or `vmas export` file whose weights (EMA weights when it has them)
            start training (fine-tuning); every weight of this config's model must be in it, in
            the same shape. Optimizer, schedule and step count start afresh; `--ckpt_path`
            (resuming) overrides it.
    """

    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    encoder: VideoEncoderSpec = DEFAULT_PLUGINS["encoder"]
    decoder: MusicDecoderSpec = DEFAULT_PLUGINS["decoder"]
    codec: AudioCodecSpec = DEFAULT_PLUGINS["codec"]
    cond_dropout: float = 0.1
    text: Optional[TextConditionerSpec] = None
    text_dropout: float = 0.3
    activation_checkpointing: bool = False
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    num_audio_samples: int = 2
    init_from: Optional[str] = None

    def without_weights(self) -> "ModelConfig":
        """This section with the plugins' `pretrained` sources dropped (`vmas profile` builds the network
        on the meta device), except a small local file that defines a plugin's geometry (the demo's
        fitted `mel_rvq` codec); weights are never read. A text conditioner from a local folder is built
        from the folder's `config.json` (and its tokenizer), untrained."""

        def dropped(spec: Any) -> Any:
            if not isinstance(spec, Mapping) or not spec.get("pretrained"):
                return spec
            if isinstance(spec["pretrained"], str) and Path(spec["pretrained"]).is_file():
                return dict(spec)
            return {**spec, "pretrained": None}

        def text_geometry(spec: Any) -> Any:  # a frozen text encoder has no untrained size: its folder's config.json
            if isinstance(spec, Mapping) and isinstance(spec.get("pretrained"), str):
                config = Path(spec["pretrained"]) / "config.json"
                if not config.is_file():  # a hub id is not fetched: the plugin says in one line what to download
                    return {**spec, "pretrained": None}
                return {**spec, "pretrained": None, "config": json.loads(config.read_text(encoding="utf-8")),
                        "tokenizer": spec.get("tokenizer") or spec["pretrained"]}
            return spec

        return dataclasses.replace(self, encoder=dropped(self.encoder), decoder=dropped(self.decoder), codec=dropped(self.codec),
                                   text=text_geometry(self.text))

    def __post_init__(self):
        for name in ("cond_dropout", "text_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise VMASError(f"model.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class DataConfig:
    """The `data:` section: what `VMASDataModule` streams, and how.

    Args:
        root: folder (or litdata-supported URL such as `s3://bucket/disco-mv`) holding `train/`,
            `val/` and `test/`; `vmas fit`, `validate`, `test` and `predict` need it.
        sequence: clip geometry; linked from `model.sequence` by the config parser. It is also the
            training window: stored clips that are longer are cropped at random (only the window's
            frames are decoded).
        beats: `overlap` is computed from the stored beats with `beats.match_window`, so it can change
            without preparing the data again (the loss weights it: `model.loss.beat_lambda`); the
            other beat settings must be those the shards were made with (checked in `setup`).
        codec: the codec the stored tokens must come from; linked from `model.codec` by the config
            parser (None: not compared, for use without a model).
        batch_size: clips per device and step.
        num_workers: loader worker processes per device (decoding happens there).
        seed: shuffling and cropping seed (the same on every rank; litdata splits per rank).
        shuffle: shuffle the training stream.
        load_audio: decode the reference waveform; None: for validation and test only.
        test_split: split used by `vmas test` and `vmas predict`.
        augment: training-time augmentations that stand for real uploads (`VideoAugmentConfig`);
            `augment.enabled: false` turns them off.
        test_input: what `vmas test` and `vmas predict` feed the model: `shard_frames` (the frames
            stored in the shards) or `video_file` (each clip's span of its source video, read by
            `vmas generate`'s code: the path users take; every source must be readable here).
            `metrics.json` records it as `input_path`.
    """

    root: Optional[str] = None
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    beats: BeatConfig = field(default_factory=BeatConfig)
    codec: Optional[AudioCodecSpec] = None
    batch_size: int = 8
    num_workers: int = 2
    seed: int = 0
    shuffle: bool = True
    load_audio: Optional[bool] = None
    test_split: str = "test"
    augment: VideoAugmentConfig = field(default_factory=VideoAugmentConfig)
    test_input: TestInput = "shard_frames"

    def __post_init__(self):
        if self.test_input not in typing.get_args(TestInput):
            raise VMASError(f"data.test_input must be one of {', '.join(typing.get_args(TestInput))}, "
                            f"got '{self.test_input}'")

