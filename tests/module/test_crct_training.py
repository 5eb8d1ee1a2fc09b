"""End to end: a plain-torch CRCT training loop on a planted 3-class, 2-modality spatial problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _crct_synth import planted_spatial_problem, train_crct
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problem: threads only add overhead (and suffer from busy machines)
    yield
    torch.set_num_threads(n)


def test_training_loop_decreases_loss_and_recovers_classes(one_thread):
    _, labels, feats, spatial, fgraphs = planted_spatial_problem(side=30, seed=0)
    raw = adjusted_rand_score(labels, KMeans(3, n_init=10, random_state=0).fit_predict(np.hstack(feats)))
    _net, z, hist = train_crct(feats, spatial, fgraphs, n_steps=100, seed=0)
    assert all(np.isfinite(h["loss"]) for h in hist)
    # the reconstruction term and the total objective both go down
    assert hist[-1]["rec"] < hist[0]["rec"] - 0.3
    assert np.mean([h["loss"] for h in hist[-10:]]) < hist[0]["loss"] - 0.5
    # every term acted during the run (schedules are relative to its length)
    assert any(h["cluster"] != 0 for h in hist)
    assert any(h["graph"] > 0 for h in hist)
    assert hist[-1]["aug"] != hist[-1]["rec"], "augmentation perturbed Z late in training"
    pred = KMeans(3, n_init=10, random_state=0).fit_predict(z.numpy())
    ari = adjusted_rand_score(labels, pred)
    assert ari > 0.9, f"ARI {ari:.3f} (raw features: {raw:.3f})"
    assert ari > raw + 0.1, "the spatial graph and training add over k-means on the raw features"
