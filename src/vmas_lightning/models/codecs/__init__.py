"""Audio codecs (`AUDIO_CODECS`) and the delay pattern that interleaves their codebooks."""
from vmas_lightning.models.codecs.delay import apply_delay, revert_delay
from vmas_lightning.models.codecs.encodec import EncodecCodec, encodec

__all__ = ["EncodecCodec", "apply_delay", "encodec", "revert_delay"]
