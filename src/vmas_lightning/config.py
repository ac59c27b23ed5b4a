"""The typed settings of a run that are neither a plugin's options nor the clip geometry
(`sequence.SequenceConfig`) nor generation's (`generation.config.GenerationConfig`): the losses, the
optimiser and what `vmas test` computes. LightningCLI parses them as `model.loss`, `model.optim` and
`model.evaluation` (`--print_config` shows them); checkpoints record them. They import nothing from
training, so inference reads a checkpoint's settings without the training code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from vmas_lightning.errors import VMASError
from vmas_lightning.registry import AudioClassifierSpec, AudioEmbedderSpec

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
    """

    embedder: AudioEmbedderSpec = "vggish"
    classifier: AudioClassifierSpec = "ast"
    output_dir: Optional[str] = None
    reference_stats_cache: Optional[str] = None
    reference_set: Optional[str] = None
    save_audio: bool = True
    reference_rows: bool = True
    mv_align_source: bool = True


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
    implementation: Literal["for_loop", "foreach", "fused"] = "foreach"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise VMASError(f"optim: unknown optimizer '{self.optimizer}'; known: {', '.join(OPTIMIZERS)}")
        if self.implementation not in OPTIMIZER_IMPLEMENTATIONS:
            raise VMASError(f"optim: unknown implementation '{self.implementation}'; known: {', '.join(OPTIMIZER_IMPLEMENTATIONS)}")
        if self.optimizer == "dadapt_adam" and self.implementation == "fused":
            raise VMASError("optim: dadapt_adam has no fused implementation; set model.optim.implementation foreach")
        if self.lr <= 0 or self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1 or self.encoder_lr_scale <= 0:
            raise VMASError(
                f"optim: need lr > 0, warmup_steps >= 0, 0 <= min_lr_ratio <= 1 and encoder_lr_scale > 0; "
                f"got lr={self.lr}, warmup_steps={self.warmup_steps}, min_lr_ratio={self.min_lr_ratio}, "
                f"encoder_lr_scale={self.encoder_lr_scale}"
            )
