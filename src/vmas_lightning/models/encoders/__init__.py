"""Video encoders (`VIDEO_ENCODERS`): `video [B, 3, F, H, W] in [0, 1] -> features [B, S, D]`.

Every factory takes `num_frames` and `frame_size` (the model passes them from its
`SequenceConfig`) plus its own options; each module has `out_dim` and `frames_per_feature`.
"""
from vmas_lightning.models.encoders.clip import ClipFrameEncoder, clip
from vmas_lightning.models.encoders.hiera import HieraVideoEncoder, efficient_hiera, hiera

__all__ = ["ClipFrameEncoder", "HieraVideoEncoder", "clip", "efficient_hiera", "hiera"]
