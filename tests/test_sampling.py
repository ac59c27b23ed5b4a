"""Next-token sampling and GenerationConfig: known distributions, filters and seeding."""
import math

import pytest
import torch

from vmas_lightning.errors import VMASError
from vmas_lightning.config import GenerationConfig
from vmas_lightning.generation.sampling import filter_top_k, filter_top_p, make_generator, sample_next_token


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[0.1, 2.0, -1.0, 3.0, 0.5]])
    kept = torch.isfinite(filter_top_k(logits, 2))
    assert kept.tolist() == [[False, True, False, True, False]]
    assert torch.equal(filter_top_k(logits, 0), logits)


def test_top_p_keeps_the_smallest_set_reaching_p_in_any_order():
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])
    logits = probs.log()
    assert torch.isfinite(filter_top_p(logits, 0.7)).tolist() == [False, True, False, True]
    assert torch.isfinite(filter_top_p(logits, 0.5)).tolist() == [False, True, False, False]
    assert torch.isfinite(filter_top_p(logits, 0.9)).tolist() == [True, True, False, True]


def test_greedy_and_top_1_give_the_argmax():
    logits = torch.randn(3, 4, 50)
    assert torch.equal(sample_next_token(logits, temperature=0.0), logits.argmax(-1))
    assert torch.equal(sample_next_token(logits, top_k=1, generator=make_generator(3, "cpu")), logits.argmax(-1))


@pytest.mark.parametrize("temperature, expected", [(1.0, 0.8), (2.0, math.sqrt(0.8) / (math.sqrt(0.8) + math.sqrt(0.2)))])
def test_sample_frequencies_follow_the_tempered_distribution(temperature, expected):
    logits = torch.tensor([0.2, 0.8]).log().expand(20000, 2)
    draws = sample_next_token(logits, top_k=0, temperature=temperature, generator=make_generator(0, "cpu"))
    assert draws.float().mean().item() == pytest.approx(expected, abs=0.015)


def test_same_seed_same_tokens_different_seed_different_tokens():
    logits = torch.randn(2, 4, 2048)
    first = sample_next_token(logits.expand(8, 2, 4, 2048), generator=make_generator(7, "cpu"))
    again = sample_next_token(logits.expand(8, 2, 4, 2048), generator=make_generator(7, "cpu"))
    other = sample_next_token(logits.expand(8, 2, 4, 2048), generator=make_generator(8, "cpu"))
    assert first.shape == (8, 2, 4)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_generation_config_defaults_and_bad_values():
    config = GenerationConfig()
    assert (config.top_k, config.top_p, config.temperature, config.cfg_scale, config.use_cache) == (250, 0.0, 1.0, 3.0, True)
    with pytest.raises(VMASError, match="top_p"):
        GenerationConfig(top_p=1.5)
    with pytest.raises(VMASError, match="overlap_s"):
        GenerationConfig(window_s=4.0, overlap_s=4.0)
