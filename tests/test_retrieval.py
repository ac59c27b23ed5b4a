"""Video <-> music Recall@K known answers."""
import pytest
import torch

from vmas_lightning.metrics import RetrievalRecall, recall_at_k


def test_identical_video_and_music_features_give_recall_1():
    features = torch.randn(20, 16)
    metric = RetrievalRecall()
    metric.update(features[:12], features[:12])
    metric.update(features[12:], features[12:])
    out = metric.compute()
    assert out["recall@1"] == 1 and out["recall_m2v@1"] == 1 and out["recall@10"] == 1


def test_recall_at_k_counts_the_rank_of_the_right_item():
    similarity = torch.tensor([[0.9, 0.1, 0.5], [0.8, 0.7, 0.0], [0.2, 0.3, 0.1]])
    recall = recall_at_k(similarity, (1, 2, 3))
    assert [recall[k].item() for k in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    recall_back = recall_at_k(similarity.T, (1,))  # music -> video: columns are the queries
    assert recall_back[1].item() == pytest.approx(2 / 3)


def test_ties_count_against_the_query():
    metric = RetrievalRecall(ks=(1,))
    metric.update(torch.ones(5, 4), torch.ones(5, 4))
    assert metric.compute()["recall@1"] == 0


def test_shifted_pairs_give_recall_0():
    features = torch.eye(6)
    metric = RetrievalRecall(ks=(1,))
    metric.update(features, features.roll(1, dims=0))
    assert metric.compute()["recall@1"] == 0
