"""How long does a phone-sized upload hold `vmas serve`'s one worker? Printed as JSON.

    python benchmarks/serve_upload.py --ckpt checkpoints/demo/model.ckpt [--width 3840 --height 2160 --seconds 5]

A held-out demo clip (seed 4) is rendered as a camera films it (30 fps, upscaled to the upload's size,
H.264), then, after one warm-up job, two jobs go through `serve.jobs.JobQueue` as `vmas serve` runs
them (the real worker, the stage callbacks, the time budget): the large upload, and right behind it a
256-px one. Reported: each
stage's seconds, the job's wall time against its music's generation time (`wall_over_music`; the issue's
bar: under 3), and how long the small job waited. MV-Align is not scored above `--score-max-side`
(its flow at native size took 643 s for this 4K clip on the 2-core CPU machine, measured once).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch


def write_upload(path: Path, frames: np.ndarray, fps: float, width: int, height: int) -> Path:
    """`frames` upscaled to `width x height` and encoded as H.264 (preset veryfast, CRF 23) at `fps`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps), options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            image = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


async def _chunks(path: Path):
    yield path.read_bytes()


def submit(queue, path: Path, client: str) -> str:
    upload = asyncio.run(queue.receive(path.name, _chunks(path), path.stat().st_size, client))
    return queue.submit(path.name, upload, queue.generation.config, False, client)


def wait(queue, job_id: str, timeout: float = 3600.0) -> dict:
    deadline = time.time() + timeout
    while (status := queue.status(job_id))["state"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.05)
    return status


def main() -> None:
    from vmas_lightning.data.demo import render_clip_frames
    from vmas_lightning.generation.pipeline import Generation, GenerationOptions
    from vmas_lightning.serve.jobs import JobQueue

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="checkpoints/demo/model.ckpt")
    parser.add_argument("--width", type=int, default=3840)
    parser.add_argument("--height", type=int, default=2160)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--score-max-side", type=int, default=1280)
    parser.add_argument("--budget-s", type=float, default=900.0)
    args = parser.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    generation = Generation(GenerationOptions(ckpt=args.ckpt))
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        frames = render_clip_frames(4, "test", 0, args.seconds, args.fps, 256)
        large = write_upload(work / "upload_4k.mp4", frames, args.fps, args.width, args.height)
        small = write_upload(work / "small.mp4", frames, args.fps, 256, 256)
        queue = JobQueue(generation, work / "jobs", max_bytes=2**32, max_video_s=600.0, keep_s=3600.0,
                         budget_s=args.budget_s, score_max_side=args.score_max_side)
        queue.start()
        try:
            wait(queue, submit(queue, small, "warm-up"))  # a server that has served a job (imports and caches warm)
            ids = [submit(queue, large, "a"), submit(queue, small, "b")]  # the small one waits behind the large one
            began = time.perf_counter()
            large_status = wait(queue, ids[0])
            large_wall = time.perf_counter() - began
            small_status = wait(queue, ids[1])
            small_wall = time.perf_counter() - began
        finally:
            queue.stop()
    timings = large_status["timings"]
    report = {
        "device": str(generation.device), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "upload": {"width": args.width, "height": args.height, "seconds": args.seconds, "fps": args.fps, "codec": "h264"},
        "score_max_side": args.score_max_side, "large_job": {"state": large_status["state"], "timings": timings,
                                                             "problems": large_status["problems"], "wall_s": round(large_wall, 2)},
        "wall_over_music": round(large_wall / timings["music"], 2),
        "small_job": {"state": small_status["state"], "waited_s": round(large_wall, 2),  # it starts when the large job ends
                      "wall_s": round(small_wall, 2), "timings": small_status["timings"]},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
