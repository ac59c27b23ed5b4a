"""Music generation: sampling, the windowed `MusicGenerator`, checkpoint loading, muxing and plots."""
from vmas_lightning.generation.config import GenerationConfig
from vmas_lightning.generation.generator import MusicGenerator

__all__ = ["GenerationConfig", "MusicGenerator"]
