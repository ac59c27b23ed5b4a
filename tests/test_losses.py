"""Beat-weighted cross-entropy, soft music embedding and the contrastive loss with known answers."""
import math
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from vmas_lightning.errors import VMASError
from vmas_lightning.losses import BeatWeightedCrossEntropy, ContrastiveLoss, soft_music_embedding, weighted_cross_entropy


def random_batch(batch=3, codebooks=4, steps=7, vocab=11, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, codebooks, steps, vocab, generator=generator)
    tokens = torch.randint(0, vocab, (batch, codebooks, steps), generator=generator)
    return logits, tokens


def test_equal_weights_give_plain_cross_entropy():
    logits, tokens = random_batch()
    plain = F.cross_entropy(logits.permute(0, 3, 1, 2), tokens)
    for value in (1.0, 0.3, 7.0):
        weighted = weighted_cross_entropy(logits, tokens, torch.full((3, 7), value))
        torch.testing.assert_close(weighted, plain)


def test_weights_are_per_step_and_shared_by_codebooks():
    logits, tokens = random_batch()
    per_token = F.cross_entropy(logits.permute(0, 3, 1, 2), tokens, reduction="none")  # [B, K, T]
    weights = torch.zeros(3, 7)
    weights[1, 4] = 2.0  # only one step counts: the loss is the mean CE of its four codebooks
    torch.testing.assert_close(weighted_cross_entropy(logits, tokens, weights), per_token[1, :, 4].mean())
    overlap = (torch.rand(3, 7, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    weights = overlap + 0.5
    expected = (per_token * weights[:, None]).sum() / (weights.sum() * 4)
    torch.testing.assert_close(weighted_cross_entropy(logits, tokens, weights), expected)


def test_loss_scale_does_not_depend_on_the_number_of_beats():
    """With the same CE at every token, any weighting gives that CE."""
    logits = torch.zeros(2, 4, 5, 8)
    tokens = torch.zeros(2, 4, 5, dtype=torch.long)
    few, many = torch.ones(2, 5), torch.ones(2, 5)
    few[0, 1] = 2.0
    many[:, :4] = 2.0
    for weights in (few, many):
        torch.testing.assert_close(weighted_cross_entropy(logits, tokens, weights), torch.tensor(math.log(8)))


def test_beat_weighted_loss_weights_overlap_steps_by_one_plus_lambda():
    """w_t = o_t + lambda from the data's overlap (lambda 0.5: beat steps 1.5, the others 0.5); without
    beat weighting, every step 1 (the AR baseline's plain mean)."""
    logits, tokens = random_batch()
    per_token = F.cross_entropy(logits.permute(0, 3, 1, 2), tokens, reduction="none")
    overlap = torch.zeros(3, 7)
    overlap[0, 2] = overlap[2, 5] = 1.0
    loss = BeatWeightedCrossEntropy(beat_weighting=True, beat_lambda=0.5)
    assert torch.equal(loss.weights(overlap)[0, :3], torch.tensor([0.5, 0.5, 1.5]))
    weights = torch.full((3, 7), 0.5)
    weights[0, 2] = weights[2, 5] = 1.5
    torch.testing.assert_close(loss(logits, tokens, overlap), (per_token * weights[:, None]).sum() / (weights.sum() * 4))
    plain = BeatWeightedCrossEntropy(beat_weighting=False, beat_lambda=0.5)
    torch.testing.assert_close(plain(logits, tokens, overlap), per_token.mean())


def test_soft_music_embedding_of_confident_logits_is_the_sum_of_chosen_codes():
    codebooks = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))  # [K, V, Dc]
    codes = torch.tensor([[[1, 4], [0, 2]]])  # [B=1, K=2, T=2]
    logits = F.one_hot(codes, 5).float() * 100.0
    expected = ((codebooks[0, 1] + codebooks[1, 0]) + (codebooks[0, 4] + codebooks[1, 2])) / 2
    torch.testing.assert_close(soft_music_embedding(logits, codebooks), expected[None], atol=1e-5, rtol=0)
    uniform = soft_music_embedding(torch.zeros(1, 2, 3, 5), codebooks)  # uniform: the codebooks' means, summed
    torch.testing.assert_close(uniform, codebooks.mean(dim=1).sum(dim=0)[None])


def test_soft_music_embedding_passes_gradients_to_logits():
    logits = torch.randn(2, 4, 3, 6, requires_grad=True)
    soft_music_embedding(logits, torch.randn(4, 6, 5)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_matched_orthogonal_pairs_are_near_the_minimum():
    features = torch.eye(8)
    loss, top1 = ContrastiveLoss(8, 8, temperature=0.07, learnable_temperature=False)(features, features)
    assert 0 <= loss.item() < 1e-4 and top1.item() == 1.0


def test_unrelated_pairs_are_near_log_batch():
    generator = torch.Generator().manual_seed(0)
    music, video = torch.randn(2, 16, 4096, generator=generator)
    loss, _ = ContrastiveLoss(4096, 4096, learnable_temperature=False)(music, video)
    assert abs(loss.item() - math.log(16)) < 0.15


def test_projection_temperature_and_options():
    loss_fn = ContrastiveLoss(6, 10, embed_dim=4, temperature=0.1, learnable_temperature=True)
    assert loss_fn.music_proj.weight.shape == (4, 6) and loss_fn.video_proj.weight.shape == (4, 10)
    assert isinstance(loss_fn.logit_scale, torch.nn.Parameter)
    torch.testing.assert_close(loss_fn.logit_scale.exp(), torch.tensor([10.0]))
    loss, top1 = loss_fn(torch.randn(5, 6), torch.randn(5, 10))
    loss.backward()
    assert loss_fn.logit_scale.grad is not None and loss_fn.music_proj.weight.grad is not None
    fixed = ContrastiveLoss(4, 4, learnable_temperature=False)
    assert "logit_scale" in dict(fixed.named_buffers()) and not list(fixed.parameters())
    with pytest.raises(VMASError, match="set embed_dim"):
        ContrastiveLoss(6, 10)
    with pytest.raises(VMASError, match="gather must be 'local' or 'global'"):
        ContrastiveLoss(4, 4, gather="all")


def _global_negatives_worker(rank, world, music, video, out_dir):
    torch.set_num_threads(1)
    # A file store, not tcp:// on a port probed free: under a full run beside other suites that port
    # could be taken (or reached by another test's ranks) before rank 0 binds it. The timeout covers
    # interpreter start-up skew between the spawned ranks on 2 busy cores.
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=world,
                            timeout=timedelta(minutes=5))
    try:
        torch.manual_seed(0)
        loss_fn = ContrastiveLoss(6, 6, learnable_temperature=False, gather="global")
        bounds = [0, 3, 5]  # uneven batches: 3 clips on rank 0, 2 on rank 1
        local_music = music[bounds[rank] : bounds[rank + 1]].clone().requires_grad_(True)
        loss, top1 = loss_fn(local_music, video[bounds[rank] : bounds[rank + 1]])
        loss.backward()
        torch.save((loss.detach(), local_music.grad), f"{out_dir}/rank{rank}.pt")
        dist.barrier()  # neither rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()


def test_global_negatives_match_the_single_process_loss_over_the_whole_batch(tmp_path):
    """Two gloo ranks: each rank's loss uses every rank's clips as negatives, and each rank's own
    features get the gradient of the sum of all ranks' losses (which DDP then averages)."""
    generator = torch.Generator().manual_seed(0)
    music, video = torch.randn(2, 5, 6, generator=generator)
    mp.start_processes(_global_negatives_worker, args=(2, music, video, str(tmp_path)), nprocs=2,
                       start_method="spawn")  # fresh interpreters: a fork of a threaded torch process can deadlock

    whole = music.clone().requires_grad_(True)
    loss_fn = ContrastiveLoss(6, 6, learnable_temperature=False, gather="global")  # no process group: local
    video_to_music = loss_fn.logit_scale.exp() * F.normalize(video, dim=-1) @ F.normalize(whole, dim=-1).T
    per_clip = (F.cross_entropy(video_to_music, torch.arange(5), reduction="none")
                + F.cross_entropy(video_to_music.T, torch.arange(5), reduction="none")) / 2
    torch.testing.assert_close(loss_fn(whole, video)[0], per_clip.mean())
    (per_clip[:3].mean() + per_clip[3:].mean()).backward()

    (loss0, grad0), (loss1, grad1) = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    torch.testing.assert_close(loss0, per_clip[:3].mean().detach())
    torch.testing.assert_close(loss1, per_clip[3:].mean().detach())
    torch.testing.assert_close(torch.cat([grad0, grad1]), whole.grad)


def test_checkpoints_with_a_0d_logit_scale_still_load():
    """`logit_scale` is 1-D (FSDP2 shards no 0-d parameter); checkpoints from before, with a 0-d one and
    0-d optimizer states for it, load for inference and for resuming."""
    from types import SimpleNamespace

    from vmas_lightning.lit_module import VMASModule

    loss_fn = ContrastiveLoss(4, 4, learnable_temperature=True)
    old = {**loss_fn.state_dict(), "logit_scale": torch.tensor(1.5)}
    loss_fn.load_state_dict(old)
    assert loss_fn.logit_scale.shape == (1,) and loss_fn.logit_scale.item() == 1.5
    checkpoint = {"optimizer_states": [{"state": {
        0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2), "exp_avg_sq": torch.ones(2, 2)},
        1: {"step": torch.tensor(3.0), "exp_avg": torch.tensor(0.5), "exp_avg_sq": torch.tensor(0.25)},
    }}]}
    VMASModule.on_load_checkpoint(SimpleNamespace(), checkpoint)
    state = checkpoint["optimizer_states"][0]["state"]
    assert state[1]["exp_avg"].shape == state[1]["exp_avg_sq"].shape == (1,) and state[1]["step"].shape == ()
    assert state[0]["exp_avg"].shape == (2, 2)
