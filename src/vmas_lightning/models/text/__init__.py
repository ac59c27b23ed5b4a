"""Text conditioners (`TEXT_CONDITIONERS`): `captions (list of str) -> features [B, L, D], mask bool [B, L]`.

Each pads every caption to its `max_tokens`; each has `out_dim` and `max_tokens`. `words` is a small
trainable encoder of hashed words (no download, the CPU demo's); `t5` is MusicGen's frozen T5 encoder.
"""
from vmas_lightning.models.text.t5 import T5TextConditioner, t5
from vmas_lightning.models.text.words import HashedWordEncoder, words

__all__ = ["HashedWordEncoder", "T5TextConditioner", "t5", "words"]
