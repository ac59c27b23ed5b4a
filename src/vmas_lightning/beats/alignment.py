"""Beat alignment against shifted music: how much better music beats meet video beats than chance."""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.ndimage import maximum_filter1d


def shift_alignment(music: np.ndarray, video: np.ndarray, match_window: int) -> dict[str, Optional[float]]:
    """How much better music beats `[T]` meet video beats `[T]` than the same music circularly shifted.

    The statistic is the overlap share (music beats with a video beat within `match_window` steps,
    the window wrapping around the clip's ends). The null is that share for every circular shift s
    of the music whose distance from 0 is more than `match_window` steps (a smaller shift keeps
    the same overlaps). The music keeps its own rhythm and density in the null, so music with
    beats everywhere scores near 0 however the video moves, unlike the overlap share itself.

    Returns:
        `share`: the unshifted overlap share; `null_mean`, `null_std`: over the shifts; `z`:
        (share - null_mean) / null_std; `percentile`: % of shifts scoring below, ties counted half.
        All None without music or video beats; `z` None where every shift scores the same.
    """
    music, video = np.asarray(music).reshape(-1) > 0, np.asarray(video, dtype=np.float32).reshape(-1)
    num_tokens = music.size
    steps = np.flatnonzero(music)
    if steps.size == 0 or not video.any() or num_tokens <= 2 * match_window + 1:
        return {"share": None, "null_mean": None, "null_std": None, "z": None, "percentile": None}
    near = maximum_filter1d(video, size=2 * match_window + 1, mode="wrap")
    shifts = np.arange(num_tokens)
    shares = near[(steps[None, :] + shifts[:, None]) % num_tokens].mean(axis=1)  # [T]
    null = shares[np.minimum(shifts, num_tokens - shifts) > match_window]
    share, std = float(shares[0]), float(null.std())
    return {
        "share": share,
        "null_mean": float(null.mean()),
        "null_std": std,
        "z": (share - float(null.mean())) / std if std > 0 else None,
        "percentile": 100.0 * float(np.mean(null < share) + 0.5 * np.mean(null == share)),
    }
