"""benchmarks/train_step.py on the tiny config: `vmas fit`'s model and trainer built without running
(`VMASCLI(run=False)`), a few timed steps, pure JSON on stdout, and the memory estimate of the same
setup beside the (CUDA-only) measured peak. Its numbers are results (benchmarks/RESULTS.md), never asserted."""
import importlib.util
import json
from types import SimpleNamespace

import pytest

from helpers import ROOT
from vmas_lightning.cli.lightning import VMASCLI
from vmas_lightning.config_file import load_config
from vmas_lightning.cli.profile_memory import memory_report
from vmas_lightning.errors import VMASError
from vmas_lightning.memory import GiB


def load_train_step():
    spec = importlib.util.spec_from_file_location("train_step", ROOT / "benchmarks" / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_step_benchmark_on_cpu(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    report = load_train_step().main(["--config", "configs/tiny.yaml", "--steps", "3", "--warmup", "1",
                                     "--batch-size", "2", "--profile-steps", "1"])
    assert json.loads(capsys.readouterr().out) == report  # nothing but the JSON on stdout
    assert report["batch_size"] == 2 and report["steps_timed"] == 2
    assert report["strategy"] == "SingleDeviceStrategy" and report["optimizer"] == "adamw"
    low, high = report["seconds_per_step_range"]
    assert 0 < low <= report["seconds_per_step"] <= high
    assert report["clips_per_s"] == pytest.approx(2 / report["seconds_per_step"], rel=0.01)
    assert report["peak_allocated_gib"] is None and report["peak_over_estimate"] is None  # CPU: no CUDA peak
    estimate = memory_report(["configs/tiny.yaml"], SimpleNamespace(devices=1, strategy=None, batch_size=2,
                                                                    gpu_memory=None))
    assert report["estimate_gib"] == round(estimate["total_bytes"] / GiB, 2) > 0
    # MFU on CPU: over the measured matmul peak (no data sheet), and a real fraction of it
    assert report["peak_tflops_spec"] is None and report["mfu_basis"] == "measured matmul peak"
    assert report["achieved_tflops"] == pytest.approx(report["model_tflop_per_step"] / report["seconds_per_step"], rel=0.01)
    assert report["mfu"] == pytest.approx(report["achieved_tflops"] / report["peak_tflops_measured"], rel=0.02)
    assert 0 < report["mfu"] < 1
    # the phases of a step, each timed: together they are the step (2 timed steps: medians are means, which add up)
    phases = report["phase_seconds"]
    assert list(phases) == ["forward", "backward", "optimizer", "batch_end"] and all(v > 0 for v in phases.values())
    assert sum(phases.values()) == pytest.approx(report["seconds_per_step"], abs=1e-3)
    # the operator profile of the last step: the host's self times (CPU), the largest first, adding up to the step
    profile = report["profile"]
    assert profile["steps"] == 1 and profile["time"] == "host"
    ops = profile["ops"]
    assert len(ops) == 25 and [op["self_ms_per_step"] for op in ops] == sorted((op["self_ms_per_step"] for op in ops), reverse=True)
    assert any(op["op"] in ("aten::mm", "aten::addmm", "aten::bmm") for op in ops[:10])  # a transformer's time is matmuls
    assert sum(op["share"] for op in ops) <= 1.0 + 1e-6
    assert profile["self_ms_per_step_all_ops"] <= 1.5 * profile["wall_ms_per_step"]


def test_model_flops_per_step_count_what_trains():
    """x3 (forward and backward) for the decoder, and for the encoder only when it trains; x the batch."""
    from vmas_lightning.cli.profile import profile

    train_step = load_train_step()
    block = load_config(ROOT / "configs" / "tiny.yaml").model
    counted = profile(block)
    encoder, decoder = counted["encoder"]["gflops"], counted["decoder"]["gflops_per_step"] * counted["decoder"]["steps"]
    assert train_step.model_tflop_per_step(block, 4, True) == pytest.approx(4 * 3 * (encoder + decoder) / 1e3)
    assert train_step.model_tflop_per_step(block, 4, False) == pytest.approx(4 * (encoder + 3 * decoder) / 1e3)
    assert train_step.spec_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4 and train_step.spec_peak_tflops("Tesla T4") is None


def test_cli_without_running_needs_a_config():
    with pytest.raises(VMASError, match="needs --config"):
        VMASCLI(["--data.root", "data"], run=False)  # no subcommand: the check still runs
