"""Audio codecs (`AUDIO_CODECS`) and the delay pattern that interleaves their codebooks."""
from vmas_lightning.models.codecs.delay import apply_delay, revert_delay
from vmas_lightning.models.codecs.encodec import EncodecCodec, encodec
from vmas_lightning.models.codecs.mel_rvq import MelRVQCodec, MelRVQConfig, fit_mel_rvq, mel_rvq

__all__ = ["EncodecCodec", "MelRVQCodec", "MelRVQConfig", "apply_delay", "encodec", "fit_mel_rvq", "mel_rvq", "revert_delay"]
