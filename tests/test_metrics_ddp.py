"""The evaluation suite gives the same metrics.json and per-clip CSV with 1 process and with 2 (gloo)."""
import csv
import json
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vmas_lightning.metrics import EvaluationSuite, paper_table
from vmas_lightning.metrics.mv_align import frames_peaks
from vmas_lightning.metrics.suite import CROSS_ENTROPY_KEYS

NUM_CLIPS, SAMPLE_RATE, FPS = 4, 32000, 10.0
SUITE = dict(embedder={"name": "encodec", "size": "tiny"}, classifier={"name": "ast", "pretrained": None})


def clips(indices):
    """Deterministic batch for clip indices: audio [B, 1, N], MV-Align peaks of frames [B, F, H, W, 3],
    video beats [B, T], features [B, D], ids."""
    g = torch.Generator().manual_seed(0)
    generated = torch.randn(NUM_CLIPS, 1, SAMPLE_RATE, generator=g) * 0.1
    reference = torch.randn(NUM_CLIPS, 1, SAMPLE_RATE, generator=g) * 0.1
    frames = torch.randint(0, 256, (NUM_CLIPS, 6, 32, 32, 3), generator=g, dtype=torch.uint8)
    video_beats = (torch.rand(NUM_CLIPS, 50, generator=g) < 0.1).float()  # 1 s on the 50 Hz token grid
    video_features = torch.randn(NUM_CLIPS, 8, generator=g)
    music_features = video_features + 0.5 * torch.randn(NUM_CLIPS, 8, generator=g)
    ids = [f"clip{i}" for i in range(NUM_CLIPS)]
    cross_entropy = {key: torch.rand(NUM_CLIPS, generator=g) for key in CROSS_ENTROPY_KEYS}
    cross_entropy["ce_beats"][-1] = float("nan")  # a clip without beat-weighted steps
    idx = list(indices)
    return dict(generated=generated[idx], reference=reference[idx], sample_rate=SAMPLE_RATE,
                video_peaks=[frames_peaks(frames[i].numpy(), FPS) for i in idx], video_beats=video_beats[idx],
                video_features=video_features[idx], music_features=music_features[idx], ids=[ids[i] for i in idx],
                cross_entropy={key: values[idx] for key, values in cross_entropy.items()})


def evaluate(indices_per_batch, out_dir):
    torch.manual_seed(0)
    suite = EvaluationSuite(**SUITE)
    for indices in indices_per_batch:
        suite.update(**clips(indices))
    metrics = suite.compute()
    suite.save(out_dir, metrics)
    return metrics


def _worker(rank, world_size, out_dir):
    # A file store, not tcp:// on a port probed free (another test's ranks could take it first); the
    # timeout covers interpreter start-up skew between the spawned ranks on 2 busy cores.
    dist.init_process_group("gloo", init_method=f"file://{out_dir}.store", rank=rank, world_size=world_size,
                            timeout=timedelta(minutes=5))
    try:
        half = NUM_CLIPS // world_size
        evaluate([range(rank * half, (rank + 1) * half)], out_dir)
    finally:
        dist.destroy_process_group()


def read_outputs(folder):
    metrics = json.loads((folder / "metrics.json").read_text())
    with open(folder / "clips.csv") as handle:
        rows = list(csv.DictReader(handle))
    return metrics, rows


def test_two_processes_give_the_one_process_metrics(tmp_path):
    # batched as the two processes batch them: the classifier's float32 outputs depend on the batch a clip
    # runs in, and the KL between these nearly equal distributions (~3e-7) would differ by 10% (AMD EPYC)
    single = evaluate([range(0, NUM_CLIPS // 2), range(NUM_CLIPS // 2, NUM_CLIPS)], tmp_path / "one")
    assert single["num_clips"] == NUM_CLIPS
    for key in ("fad", "kl", "kl_gen_ref", "mv_align", "alignment_z", "alignment_percentile", "onset_alignment_z",
                "onset_alignment_percentile", "recall@1", "recall@10",
                "recall_m2v@1", "recall_m2v@10"):
        assert isinstance(single[key], float) and single[key] == single[key], key  # finite
    assert single["embedder"] == "encodec" and single["classifier_calibrated"] is False and "note" in single
    assert single["mv_align_protocol"] == "model_rate_frames" and "MV-Align on the model-rate frames" in single["note"]
    given = clips(range(NUM_CLIPS))["cross_entropy"]  # means over clips; the clip without beats left out of ce_beats
    assert [single[key] for key in CROSS_ENTROPY_KEYS] == pytest.approx([float(given[key].nanmean()) for key in CROSS_ENTROPY_KEYS])

    mp.spawn(_worker, args=(2, tmp_path / "two"), nprocs=2, join=True)
    (one, one_rows), (two, two_rows) = read_outputs(tmp_path / "one"), read_outputs(tmp_path / "two")
    assert one.keys() == two.keys()
    for key, value in one.items():
        if isinstance(value, float):
            rel = 1e-6 if key in CROSS_ENTROPY_KEYS else 1e-9  # float32 MeanMetric sums in another order
            assert two[key] == pytest.approx(value, rel=rel, abs=1e-9), key
        else:
            assert two[key] == value, key
    assert [row["id"] for row in one_rows] == [f"clip{i}" for i in range(NUM_CLIPS)]
    assert [row["id"] for row in two_rows] == [row["id"] for row in one_rows]
    for row_one, row_two in zip(one_rows, two_rows):
        assert [float(row_two[k]) for k in ("kl", "kl_gen_ref", "mv_align")] == pytest.approx(
            [float(row_one[k]) for k in ("kl", "kl_gen_ref", "mv_align")], rel=1e-6, abs=1e-9)
        alignment = ("alignment_z", "alignment_percentile", "onset_alignment_z", "onset_alignment_percentile")
        assert [row_two[k] for k in alignment] == [row_one[k] for k in alignment]
        assert row_two["mv_align_protocol"] == row_one["mv_align_protocol"] == "model_rate_frames"
        assert [row_two[k] for k in CROSS_ENTROPY_KEYS] == [row_one[k] for k in CROSS_ENTROPY_KEYS]
    assert one_rows[-1]["ce_beats"] == "" and float(one_rows[0]["ce_beats"]) == pytest.approx(float(given["ce_beats"][0]))


def test_paper_table_puts_the_run_next_to_the_paper():
    run = {"fad": 2.5, "kl": 1.3, "mv_align": 0.3, "mv_align_protocol": "source_native_rate", "recall@10": 0.25}
    lines = paper_table(run).splitlines()
    assert lines[0].startswith("| method (DISCO-MV) | FAD | KL | MV-Align | R@10 (%) |")
    assert "| VMAs (paper) | 2.38 | 1.34 | 0.350 | 26.7 |" in lines
    assert lines[-1] == "| **this run** | 2.50 | 1.30 | 0.300 | 25.0 |"
    for protocol in ("model_rate_frames", "mixed"):  # not the AV-Align protocol: no MV-Align next to the paper's
        assert paper_table({**run, "mv_align_protocol": protocol}).splitlines()[-1] == "| **this run** | 2.50 | 1.30 | - | 25.0 |"
    assert "| V2Meow (paper) | 4.62 | - | - | - |" in paper_table({}, dataset="MusicCaps").splitlines()
