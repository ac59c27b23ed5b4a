"""`GenerationConfig`: every sampling and windowing setting of music generation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, get_args

from vmas_lightning.errors import VMASError

DecodeStep = Literal["eager", "cuda_graph", "torch_compile"]


@dataclass
class GenerationConfig:
    """How tokens are sampled and how a video longer than the training window is covered.

    Args:
        top_k: sample among the k most likely tokens (MusicGen's default 250); 0 disables.
        top_p: nucleus sampling, keep the smallest set of tokens whose probability reaches p,
            applied after top-k; 0 disables.
        temperature: logits are divided by it; 0 means greedy (argmax) decoding.
        cfg_scale: classifier-free guidance, `null + cfg_scale * (cond - null)` on the logits with
            the model's learned null condition; 1 disables guidance (and halves the work).
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
        if self.cfg_scale < 0:
            problems.append(f"cfg_scale must be >= 0, got {self.cfg_scale}")
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
