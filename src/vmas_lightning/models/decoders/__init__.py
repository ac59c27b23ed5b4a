"""Music decoders (`MUSIC_DECODERS`): factory `(num_codebooks, codebook_size, cond_dim, **options)`."""
from vmas_lightning.models.decoders.musicgen import MusicGenDecoder, musicgen

__all__ = ["MusicGenDecoder", "musicgen"]
