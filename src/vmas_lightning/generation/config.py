"""`GenerationConfig`: every sampling and windowing setting of music generation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from vmas_lightning.errors import VMASError


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
        if problems:
            raise VMASError("generation: " + "; ".join(problems))
