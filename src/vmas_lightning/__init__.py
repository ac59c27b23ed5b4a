"""vmas-lightning: video-to-music generation (VMAs, WACV 2025) on Lightning."""

__version__ = "0.1.0"
