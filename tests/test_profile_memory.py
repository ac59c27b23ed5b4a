"""`vmas profile --memory`: the estimate against one real CPU training step of the tiny model, and
what the strategy (DDP buckets, FSDP sharding), EMA, optimizer and precision add."""
import json
from types import SimpleNamespace

import pytest
import torch
import yaml

from helpers import ROOT, TINY_CONFIG, one_line_error
from vmas_lightning.cli.main import main
from vmas_lightning.config_file import load_config
from vmas_lightning.cli.profile_memory import fake_batch, memory_report, parse_gpu_memory
from vmas_lightning.lit_module import VMASModule
from vmas_lightning.memory import GiB, optimizer_state_ratio
from vmas_lightning.config import OptimConfig
from vmas_lightning.optim import build_optimizer

BATCH = 2


def _tiny_config(tmp_path, **trainer) -> str:
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["trainer"].update(trainer)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _real_step_bytes(config_path: str) -> dict[str, int]:
    """Bytes of one real bf16-mixed CPU step of the config's model: parameters, saved-for-backward
    tensors (once per storage, parameters left out), gradients and AdamW states after the step."""
    torch.manual_seed(0)
    module = VMASModule(**vars(load_config(config_path).model)).train()
    batch = fake_batch(module.model.sequence, BATCH)
    batch["video"].random_(0, 256)
    batch["tokens"].random_(0, module.model.codec.codebook_size)
    storages = {p.untyped_storage().data_ptr() for p in module.parameters()}
    saved = []

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() not in storages:
            storages.add(tensor.untyped_storage().data_ptr())
            saved.append(tensor.untyped_storage().nbytes())
        return tensor

    optimizer = build_optimizer(module, OptimConfig(optimizer="adamw"))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = module.compute_losses(batch)["loss"]
    loss.backward()
    grads = sum(p.grad.nbytes for p in module.parameters() if p.grad is not None)
    optimizer.step()
    states = sum(v.nbytes for s in optimizer.state.values() for k, v in s.items() if k != "step")
    params = sum(p.nbytes for p in module.parameters())
    # autocast's bf16 copies of the trainable Linear and Conv weights and biases (all run; within 1%: a
    # weight whose layer's input needs no gradient is cast but not saved)
    casts = sum(p.numel() * 2 for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv3d))
                for p in m.parameters(recurse=False) if p.requires_grad)
    inputs = sum(t.nbytes for t in batch.values() if torch.is_tensor(t))  # not the captions
    return {"params": params, "casts": casts, "saved": sum(saved), "grads": grads, "optimizer": states, "batch": inputs,
            "total": params + sum(saved) + grads + states + inputs}


def test_estimate_matches_a_real_cpu_step(tmp_path):
    # The real step has no DDP buckets and no EMA: the config turns both off.
    path = _tiny_config(tmp_path, precision="bf16-mixed", callbacks=[],
                        strategy={"class_path": "lightning.pytorch.strategies.DDPStrategy",
                                  "init_args": {"gradient_as_bucket_view": True}})
    cfg = SimpleNamespace(strategy=None, devices=None, batch_size=BATCH, gpu_memory="80")
    report = memory_report(path, cfg)
    rows = {r["part"]: r["bytes"] for r in report["rows"]}
    real = _real_step_bytes(path)
    assert rows["parameters (trainable)"] + rows["parameters (frozen)"] == real["params"]
    assert rows["gradients"] == real["grads"] and rows["optimizer states"] == real["optimizer"] == 2 * real["grads"]
    assert rows["DDP gradient buckets"] == 0 and "EMA copy" not in rows
    assert rows["weight casts"] == pytest.approx(real["casts"], rel=0.01) and rows["input batch"] == real["batch"]
    assert rows["activations"] + rows["weight casts"] == pytest.approx(real["saved"], rel=0.10)
    assert report["total_bytes"] == pytest.approx(real["total"], rel=0.10)


def test_optimizer_states_and_gpu_memory_units():
    assert optimizer_state_ratio(OptimConfig(optimizer="adamw")) == 2
    assert optimizer_state_ratio(OptimConfig(optimizer="dadapt_adam")) == 3  # s, exp_avg, exp_avg_sq
    assert parse_gpu_memory("80") == parse_gpu_memory("80GiB") == 80 * GiB
    assert parse_gpu_memory("85.9 GB") == int(85.9e9)


def test_strategies_ema_and_verdict(tmp_path, capsys):
    path = _tiny_config(tmp_path, precision="32-true", strategy="ddp")
    assert main(["profile", "--memory", "--config", path, "--batch-size", "1", "--json"]) == 0
    ddp = json.loads(capsys.readouterr().out)
    rows = {r["part"]: r["bytes"] for r in ddp["rows"]}
    trainable, everything = rows["parameters (trainable)"], rows["parameters (trainable)"] + rows["parameters (frozen)"]
    assert rows["DDP gradient buckets"] == rows["gradients"] == trainable  # a copy by default
    assert rows["EMA copy"] > everything and "weight casts" not in rows  # 32-true: no autocast
    assert ddp["fits"] and ddp["setup"]["strategy"] == "ddp" and ddp["setup"]["ema"]
    buffers = rows["EMA copy"] - everything

    # configs/cluster/fsdp.yaml stacked on the config, as `vmas fit` stacks them: FSDP2, the EMA sharded too
    assert main(["profile", "--memory", "--config", path, "--config", str(ROOT / "configs" / "cluster" / "fsdp.yaml"),
                 "--batch-size", "1", "--devices", "4", "--json"]) == 0
    fsdp = json.loads(capsys.readouterr().out)
    sharded = {r["part"]: r["bytes"] for r in fsdp["rows"]}
    assert fsdp["setup"]["strategy"] == "fsdp" and fsdp["config"].endswith("tiny.yaml + " + str(ROOT / "configs/cluster/fsdp.yaml"))
    assert sharded["parameters (trainable)"] == sharded["gradients"] == trainable // 4
    assert sharded["optimizer states"] == rows["optimizer states"] // 4
    assert sharded["EMA copy"] == everything // 4 + buffers and "DDP gradient buckets" not in sharded
    assert main(["profile", "--memory", "--config", path, "--batch-size", "1", "--strategy", "fsdp", "--devices", "4",
                 "--gpu-memory", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "does not fit" in out and "fsdp on 4 GPU(s)" in out and "sharded over 4 GPUs" in out and "EMA copy" in out

    dadapt = yaml.safe_load(TINY_CONFIG.read_text())
    dadapt["model"]["optim"]["optimizer"] = "dadapt_adam"
    (tmp_path / "dadapt.yaml").write_text(yaml.safe_dump(dadapt))
    assert main(["profile", "--memory", "--config", str(tmp_path / "dadapt.yaml"), "--strategy", "fsdp"]) == 2
    assert "dadapt_adam does not run under FSDP2" in one_line_error(capsys)
    lightning_ema = _tiny_config(tmp_path, callbacks=[{"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging"}])
    assert main(["profile", "--memory", "--config", lightning_ema, "--strategy", "fsdp"]) == 2
    assert "WeightAveraging does not work under FSDP" in one_line_error(capsys)

    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"trainer": {"precision": "64-true"}, "model": {}}))
    assert main(["profile", "--memory", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "64-true" in one_line_error(capsys)


def test_activation_checkpointing_estimate(tmp_path, capsys):
    """With checkpointing, activations = saved outside the layers + each layer's and block's input +
    the largest one's own activations (recomputed in backward)."""
    reports = []
    for checkpointing in (False, True):
        config = yaml.safe_load(TINY_CONFIG.read_text())
        config["model"]["activation_checkpointing"] = checkpointing
        path = tmp_path / f"tiny_{checkpointing}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert main(["profile", "--memory", "--config", str(path), "--batch-size", str(BATCH), "--json"]) == 0
        reports.append({r["part"]: r["bytes"] for r in json.loads(capsys.readouterr().out)["rows"]})
    plain, checkpointed = reports
    steps, width, layers = 503, 64, 2  # the tiny decoder's layer input: hidden states [B, T + K - 1, width] fp32
    assert layers * BATCH * steps * width * 4 < checkpointed["activations"] < plain["activations"]
    assert checkpointed["parameters (trainable)"] == plain["parameters (trainable)"]
