"""Delay pattern: codebook k shifted right by k, every code kept (T + K - 1 steps)."""
import torch

from vmas_lightning.models.codecs.delay import apply_delay, revert_delay

P = 99


def test_known_delay_pattern():
    tokens = torch.tensor([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
    expected = torch.tensor([[[1, 2, 3, P, P], [P, 4, 5, 6, P], [P, P, 7, 8, 9]]])
    assert torch.equal(apply_delay(tokens, P), expected)
    assert torch.equal(revert_delay(expected), tokens)


def test_round_trip_keeps_last_codes_of_every_codebook():
    tokens = torch.randint(0, 2048, (3, 4, 500))
    delayed = apply_delay(tokens, 2048)
    assert delayed.shape == (3, 4, 503)
    assert torch.equal(delayed[:, 3, -1], tokens[:, 3, -1])  # the code a truncation to T would drop
    assert torch.equal(revert_delay(delayed), tokens)


def test_revert_logits_follows_tokens():
    tokens = torch.randint(0, 16, (2, 4, 7))
    delayed_logits = torch.nn.functional.one_hot(apply_delay(tokens, 16), 17).float()  # [B, K, T + 3, V + 1]
    logits = revert_delay(delayed_logits)
    assert logits.shape == (2, 4, 7, 17)
    assert torch.equal(logits.argmax(-1), tokens)
