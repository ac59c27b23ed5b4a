"""Music generation: sampling, the windowed `MusicGenerator`, checkpoint loading, muxing and the
inference pipeline (`pipeline.Generation`, behind `vmas generate` and `vmas serve`)."""
from vmas_lightning.config import GenerationConfig
from vmas_lightning.generation.generator import MusicGenerator

__all__ = ["GenerationConfig", "MusicGenerator"]
