"""FSDP with an EMA: `vmas_lightning.callbacks.EMA` against Lightning's `EMAWeightAveraging` (same
numbers, same checkpoint layout, either resumes the other), and configs/cluster/fsdp.yaml (FSDP2 under
`ModelParallelStrategy`) trained by 2 CPU ranks over gloo: killed and resumed it ends where an
uninterrupted run ends, EMA included, and where DDP ends."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint, WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import ROOT
from test_resume import TINY, fit, fixed_run_dir_args, probe_env, read_steps, vmas_command, write_run_config
from vmas_lightning.callbacks import EMA
from vmas_lightning.checkpointing import latest_checkpoint
from vmas_lightning.errors import VMASError

FSDP = ROOT / "configs" / "cluster" / "fsdp.yaml"
TWO_CPU_RANKS = ("--trainer.accelerator", "cpu", "--trainer.devices", "2")


# ---------------------------------------------------------------------------------------- EMA on one device
class Toy(L.LightningModule):
    """Parameters and buffers of both kinds (BatchNorm's float running stats, its int counter)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        return F.mse_loss(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", F.mse_loss(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2)


def _toy_fit(folder: Path, ema: L.Callback, steps: int, resume: Path | None = None) -> tuple[Toy, dict, float]:
    """`steps` SGD steps of `Toy` (one batch an epoch, validation every 2 epochs) -> module, last.ckpt, val loss."""
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=8)
    module = Toy()
    trainer = L.Trainer(default_root_dir=folder, max_steps=steps, accelerator="cpu", devices=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        check_val_every_n_epoch=2, callbacks=[ema, ModelCheckpoint(dirpath=folder, save_last=True,
                                                                                   save_top_k=0, every_n_train_steps=1)])
    trainer.fit(module, data, data, ckpt_path=resume)
    return module, torch.load(folder / "last.ckpt", weights_only=False), float(trainer.callback_metrics["val_loss"])


def _assert_same_checkpoint_weights(a: dict, b: dict) -> None:
    for key in ("state_dict", "current_model_state", "averaging_state"):
        assert a[key].keys() == b[key].keys(), key
        for name, value in a[key].items():
            assert torch.equal(b[key][name], value), f"{key}: {name}"


def lightnings_ema(decay: float) -> WeightAveraging:
    """Lightning's weight averaging with torch's foreach EMA (`get_ema_multi_avg_fn`), the maths `EMA`
    does; `EMAWeightAveraging` is the same callback with the per-tensor `get_ema_avg_fn`."""
    return WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(decay))


def test_ema_is_lightnings_ema_weight_averaging_and_resumes_its_checkpoints(tmp_path):
    """The same EMA, validation (on the EMA weights), final weights and checkpoint, bit for bit; a
    checkpoint of either callback resumes with the other to the uninterrupted run's numbers."""
    ours, ours_ckpt, ours_val = _toy_fit(tmp_path / "ours", EMA(decay=0.9), 6)
    lightnings, lightnings_ckpt, lightnings_val = _toy_fit(tmp_path / "lightning", lightnings_ema(0.9), 6)
    assert ours_val == lightnings_val
    _assert_same_checkpoint_weights(ours_ckpt, lightnings_ckpt)
    assert int(ours_ckpt["averaging_state"]["n_averaged"]) == 6
    for name, value in lightnings.state_dict().items():  # training ends with the EMA weights in the module
        assert torch.equal(ours.state_dict()[name], value), name
        assert torch.equal(ours_ckpt["state_dict"][name], value), name
    assert not torch.equal(ours_ckpt["current_model_state"]["net.0.weight"], ours_ckpt["state_dict"]["net.0.weight"])

    # 3 steps with one callback, resumed for 3 more with the other
    for first, then in ((lightnings_ema(0.9), EMA(decay=0.9)), (EMA(decay=0.9), lightnings_ema(0.9))):
        folder = tmp_path / f"{type(first).__name__}-then-{type(then).__name__}"
        _toy_fit(folder / "first", first, 3)
        _, resumed, _ = _toy_fit(folder / "then", then, 6, resume=folder / "first" / "last.ckpt")
        _assert_same_checkpoint_weights(resumed, ours_ckpt)


def test_ema_foreach_update_is_the_per_tensor_formula_to_float32_rounding(tmp_path):
    """Against Lightning's default `EMAWeightAveraging(decay)` (per tensor, `decay * ema + (1 - decay) * w`):
    the same averages to float32 rounding (relative 1e-6), the integer counter exactly."""
    _, ours, _ = _toy_fit(tmp_path / "ours", EMA(decay=0.9), 6)
    _, loop, _ = _toy_fit(tmp_path / "loop", EMAWeightAveraging(decay=0.9), 6)
    for name, value in loop["state_dict"].items():
        if value.is_floating_point():
            torch.testing.assert_close(ours["state_dict"][name], value, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(ours["state_dict"][name], value), name


def test_ema_decay_is_checked():
    with pytest.raises(VMASError, match=r"decay must be in \[0, 1\]"):
        EMA(decay=1.5)


# ---------------------------------------------------------------------------------------- FSDP on 2 CPU ranks
def _recorder(folder: Path) -> dict:
    return {"class_path": "test_resume.StepRecorder", "init_args": {"folder": str(folder)}}


def _assert_close_states(a: dict, b: dict, atol: float, keys=("state_dict", "current_model_state")) -> None:
    for key in keys:
        assert a[key].keys() == b[key].keys(), key
        for name, value in a[key].items():
            torch.testing.assert_close(b[key][name], value, rtol=0, atol=atol, msg=f"{key}: {name}")


@pytest.mark.slow
def test_fsdp_trains_checkpoints_and_resumes_exactly_with_ema(tmp_path):
    """configs/cluster/fsdp.yaml on 2 gloo ranks: N steps straight == N/2, SIGKILL, resume, N/2 more
    (EMA and training weights, optimizer states within 1e-6; the same clips in the same order); its
    single-file checkpoint has DDP's keys and DDP's numbers (within 1e-5: only reductions differ)."""
    steps, kill_at = 4, 2
    straight, killed, ddp = tmp_path / "straight", tmp_path / "killed", tmp_path / "ddp"
    kill = {"class_path": "test_resume.KillAtStep", "init_args": {"step": kill_at}}
    fsdp_args = ("--config", str(FSDP), *TWO_CPU_RANKS)

    fit(straight, write_run_config(tmp_path / "straight.json", steps, [_recorder(straight)]), *fsdp_args)
    fit(killed, write_run_config(tmp_path / "first.json", steps, [_recorder(killed), kill]), *fsdp_args,
        expect_rc=-signal.SIGKILL)
    resume_from = latest_checkpoint(killed)
    assert torch.load(resume_from, weights_only=False)["global_step"] == kill_at
    fit(killed, write_run_config(tmp_path / "resume.json", steps, [_recorder(killed)]), *fsdp_args,
        "--ckpt_path", str(resume_from))
    fit(ddp, write_run_config(tmp_path / "ddp.json", steps, [_recorder(ddp)]), *fsdp_args, "--trainer.strategy", "ddp")

    a, b, reference = (torch.load(run / "checkpoints" / "last.ckpt", weights_only=False) for run in (straight, killed, ddp))
    assert a["global_step"] == b["global_step"] == steps
    assert int(a["averaging_state"]["n_averaged"]) == int(b["averaging_state"]["n_averaged"]) == steps
    _assert_close_states(a, b, atol=1e-6)
    for state_a, state_b in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        for key, value in state_a.items():
            torch.testing.assert_close(state_b[key], value, rtol=0, atol=1e-6)
    for rank in (0, 1):
        records = [read_steps(run, rank) for run in (straight, killed, ddp)]
        assert [r["step"] for r in records[1]] == list(range(1, steps + 1))  # resumed at kill_at + 1
        assert [r["ids"] for r in records[0]] == [r["ids"] for r in records[1]] == [r["ids"] for r in records[2]]

    _assert_close_states(a, reference, atol=1e-5)  # sharding does not change the maths
    ema, current = a["state_dict"]["model.null_condition"], a["current_model_state"]["model.null_condition"]
    assert not torch.equal(ema, current)  # the EMA lags the training weights


@pytest.mark.slow
def test_lightnings_ema_weight_averaging_fails_under_fsdp(tmp_path):
    """Why the EMA callback exists: Lightning's deep-copies the module after configure_model sharded it."""
    config = write_run_config(tmp_path / "run.json", 1, [])
    config.write_text(config.read_text().replace("vmas_lightning.callbacks.EMA", "lightning.pytorch.callbacks.EMAWeightAveraging"))
    result = subprocess.run(vmas_command("fit", "--config", str(TINY), "--config", str(config), "--config", str(FSDP),
                                         *fixed_run_dir_args(tmp_path / "run"), *TWO_CPU_RANKS),
                            capture_output=True, text=True, env=probe_env(), timeout=300)
    assert result.returncode != 0 and "FSDP does not support deepcopy" in result.stderr, result.stderr[-4000:]
