"""Optimiser parameter groups and the warmup + cosine schedule at known steps."""
import math

import pytest
import torch
from torch import nn

from helpers import TINY_CONFIG
from vmas_lightning.config import OptimConfig
from vmas_lightning.config_file import load_config
from vmas_lightning.errors import VMASError
from vmas_lightning.lit_module import VMASModule
from vmas_lightning.optim import build_optimizer, build_scheduler, warmup_cosine


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, 4, 3)  # a conv kernel: decayed although its module says "embed"
        self.embed_tokens = nn.ModuleList([nn.Embedding(10, 4)])
        self.pos_embed = nn.Parameter(torch.zeros(5, 4))
        self.block = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.frozen = nn.Linear(4, 4).requires_grad_(False)


def group_ids(optimizer):
    return [{id(p) for p in group["params"]} for group in optimizer.param_groups]


def test_no_weight_decay_on_biases_norms_and_embeddings():
    model = Toy()
    cfg = OptimConfig(optimizer="adamw", lr=1e-3, weight_decay=0.1)
    optimizer = build_optimizer(model, cfg)
    decayed, plain = group_ids(optimizer)
    assert decayed == {id(model.patch_embed.weight), id(model.block[0].weight)}
    assert plain == {id(p) for p in (model.patch_embed.bias, model.embed_tokens[0].weight, model.pos_embed,
                                     model.block[0].bias, model.block[1].weight, model.block[1].bias)}
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["betas"] == (0.9, 0.95)
    # (name, param) pairs group the same way; unnamed params decay by shape only
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert group_ids(build_optimizer(named, cfg)) == [decayed, plain]
    decayed_unnamed, _ = group_ids(build_optimizer([p for _, p in named], cfg))
    assert decayed_unnamed == decayed | {id(model.embed_tokens[0].weight), id(model.pos_embed)}


def test_encoder_lr_scale_puts_the_encoder_in_its_own_groups():
    model = nn.ModuleDict({"encoder": nn.Linear(3, 3), "decoder": nn.Linear(3, 3)})
    cfg = OptimConfig(optimizer="adamw", lr=2e-3, weight_decay=0.1, encoder_lr_scale=0.1)
    optimizer = build_optimizer(model, cfg, {"encoder.": cfg.encoder_lr_scale})
    groups = [(group_ids_of(g), g["lr"], g["weight_decay"]) for g in optimizer.param_groups]
    assert groups == [
        ({id(model["decoder"].weight)}, 2e-3, 0.1), ({id(model["decoder"].bias)}, 2e-3, 0.0),
        ({id(model["encoder"].weight)}, pytest.approx(2e-4), 0.1), ({id(model["encoder"].bias)}, pytest.approx(2e-4), 0.0),
    ]
    build_scheduler(optimizer, OptimConfig(optimizer="adamw", lr=2e-3, warmup_steps=2), 10)
    assert [g["lr"] for g in optimizer.param_groups][::2] == [pytest.approx(1e-3), pytest.approx(1e-4)]  # warmup scales both
    with pytest.raises(VMASError, match="encoder_lr_scale"):
        OptimConfig(encoder_lr_scale=0)


def test_the_module_trains_encoder_and_decoder_at_their_scales_and_the_text_at_lr():
    overrides = ["--model.text", "words", "--model.optim.optimizer", "adamw", "--model.optim.lr", "0.002",
                 "--model.optim.encoder_lr_scale", "0.01", "--model.optim.decoder_lr_scale", "0.1"]
    module = VMASModule(**vars(load_config([TINY_CONFIG], overrides=overrides, trainer=False).model))
    optimizer = build_optimizer(module, module.config.optim, module.lr_scales())
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    parts = {"encoder": 2e-5, "decoder": 2e-4, "text": 2e-3}
    for part, lr in parts.items():
        params = list(getattr(module.model, part).parameters())
        assert params and all(lr_of[id(p)] == pytest.approx(lr) for p in params), part
    assert lr_of[id(module.model.null_condition)] == pytest.approx(2e-3)
    assert len(lr_of) == sum(p.requires_grad for p in module.parameters())  # every trainable parameter in one group
    with pytest.raises(VMASError, match="decoder_lr_scale"):
        OptimConfig(decoder_lr_scale=-1)


def group_ids_of(group):
    return {id(p) for p in group["params"]}


def test_dadapt_adam_steps_with_decoupled_decay():
    from dadaptation import DAdaptAdam

    from vmas_lightning.dadapt_adam import ForeachDAdaptAdam

    for implementation, kind in (("foreach", ForeachDAdaptAdam), ("for_loop", DAdaptAdam)):
        model = nn.Linear(3, 2)
        optimizer = build_optimizer(model, OptimConfig(implementation=implementation))
        assert isinstance(optimizer, kind)
        assert [(g["lr"], g["weight_decay"], g["decouple"]) for g in optimizer.param_groups] == [(1.0, 0.1, True), (1.0, 0.0, True)]
        before = model.weight.detach().clone()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
        assert not torch.equal(before, model.weight)


def _train(optimizer_cfg: OptimConfig, steps: int, model: nn.Module | None = None, state: dict | None = None):
    """`steps` steps of a small regression (same data and start for every call) -> (model, optimizer)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 8))
    x, y = torch.randn(32, 16), torch.randn(32, 8)
    if model is not None:
        net.load_state_dict(model.state_dict())
    optimizer = build_optimizer(net, optimizer_cfg)
    if state is not None:
        optimizer.load_state_dict(state)
    for _ in range(steps):
        optimizer.zero_grad()
        (net(x) - y).pow(2).mean().backward()
        optimizer.step()
    return net, optimizer


def _assert_same_weights(a: nn.Module, b: nn.Module, atol: float) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize("optimizer, lr", [("adamw", 3e-3), ("dadapt_adam", 1.0)])
def test_every_implementation_takes_the_same_steps(optimizer, lr):
    """foreach (and fused) against the per-tensor loop over 30 steps: AdamW agrees to 1e-6 (float32
    rounding of the same operations); D-Adapt Adam's step size d to 1e-5 relative and the weights
    to 1e-5 (its statistics are summed in another order: the package sums per-tensor `.item()`s in
    Python, the foreach path float64 tensors on the device), while training moves them by over 0.05."""
    start, _ = _train(OptimConfig(optimizer="adamw", lr=lr), 0)
    loop, loop_opt = _train(OptimConfig(optimizer=optimizer, lr=lr, implementation="for_loop"), 30)
    assert max((p - q).abs().max() for p, q in zip(loop.parameters(), start.parameters())) > 0.05
    for implementation in ("foreach", "fused") if optimizer == "adamw" else ("foreach",):
        other, other_opt = _train(OptimConfig(optimizer=optimizer, lr=lr, implementation=implementation), 30)
        _assert_same_weights(other, loop, atol=1e-6 if optimizer == "adamw" else 1e-5)
        if optimizer == "dadapt_adam":
            assert float(other_opt.param_groups[0]["d"]) == pytest.approx(loop_opt.param_groups[0]["d"], rel=1e-5)


def test_foreach_dadapt_adam_resumes_the_packages_state_and_chunks_alike(monkeypatch):
    """The package's optimizer state (10 steps) continued by the foreach optimizer for 10 more ends
    where the package's 20 steps do; splitting the tensors into many foreach chunks changes nothing."""
    from vmas_lightning import dadapt_adam

    loop_cfg, foreach_cfg = OptimConfig(implementation="for_loop"), OptimConfig(implementation="foreach")
    straight, _ = _train(loop_cfg, 20)
    half, half_opt = _train(loop_cfg, 10)
    resumed, _ = _train(foreach_cfg, 10, model=half, state=half_opt.state_dict())
    _assert_same_weights(resumed, straight, atol=1e-5)
    whole, _ = _train(foreach_cfg, 20)
    monkeypatch.setattr(dadapt_adam, "CHUNK_ELEMENTS", 100)
    chunked, chunked_opt = _train(foreach_cfg, 20)
    _assert_same_weights(chunked, whole, atol=0)
    assert len(list(dadapt_adam._chunks([p for g in chunked_opt.param_groups for p in g["params"]], 100))) > 3


def test_warmup_cosine_known_values():
    factors = {step: warmup_cosine(step, warmup_steps=10, total_steps=110, min_lr_ratio=0.1) for step in (0, 4, 9, 10, 60, 110, 500)}
    expected = {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0, 60: 0.1 + 0.9 * 0.5, 110: 0.1, 500: 0.1}
    assert factors == pytest.approx(expected)
    assert warmup_cosine(35, warmup_steps=10, total_steps=110, min_lr_ratio=0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine(0, warmup_steps=0, total_steps=10, min_lr_ratio=0.0) == 1.0


def test_scheduler_drives_the_learning_rate_per_step():
    model = nn.Linear(2, 2)
    cfg = OptimConfig(optimizer="adamw", lr=2e-3, warmup_steps=4, min_lr_ratio=0.0)
    optimizer = build_optimizer(model, cfg)
    config = build_scheduler(optimizer, cfg, total_steps=12.0)  # e.g. trainer.estimated_stepping_batches
    assert config["interval"] == "step" and config["frequency"] == 1
    lrs = []
    for _ in range(13):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        config["scheduler"].step()
    assert lrs[:5] == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3, 2e-3])
    assert lrs[8] == pytest.approx(1e-3) and lrs[12] == pytest.approx(0.0, abs=1e-12)
    # max_steps wins over the trainer's estimate
    capped = build_scheduler(optimizer, OptimConfig(optimizer="adamw", warmup_steps=0, max_steps=2), total_steps=1000)
    assert capped["scheduler"].lr_lambdas[0](1) == pytest.approx(0.5)


def test_unknown_steps_and_bad_options_are_one_line_errors():
    optimizer = build_optimizer(nn.Linear(2, 2), OptimConfig(optimizer="adamw"))
    with pytest.raises(VMASError, match="set model.optim.max_steps or trainer.max_steps"):
        build_scheduler(optimizer, OptimConfig(), total_steps=float("inf"))
    with pytest.raises(VMASError, match="unknown optimizer 'sgd'; known: adamw, dadapt_adam"):
        OptimConfig(optimizer="sgd")
    with pytest.raises(VMASError, match="no trainable parameters"):
        build_optimizer(nn.Linear(2, 2).requires_grad_(False), OptimConfig())
    with pytest.raises(VMASError, match="unknown implementation 'cuda'; known: for_loop, foreach, fused"):
        OptimConfig(implementation="cuda")
    with pytest.raises(VMASError, match="dadapt_adam has no fused implementation"):
        OptimConfig(optimizer="dadapt_adam", implementation="fused")
