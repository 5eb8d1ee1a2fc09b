"""Relative-progress schedules and k-means prototypes with stable ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scomics_ext.module import (
    LinearSchedule,
    StepSchedule,
    assign_to_prototypes,
    aug_weight_schedule,
    cluster_weight_schedule,
    kmeans_prototypes,
    match_prototypes,
    relative_progress,
    rho_schedule,
)


def test_paper_schedules_made_relative():
    # 300-epoch paper schedule: lambda 0.01 / 0.2 / 0.5 over epochs 0-100 / 100-200 / >200, beta 0 then 1
    for n_epochs in (30, 50, 300):
        lam = [aug_weight_schedule(relative_progress(t, n_epochs)) for t in range(n_epochs)]
        beta = [cluster_weight_schedule(relative_progress(t, n_epochs)) for t in range(n_epochs)]
        assert set(lam) == {0.01, 0.2, 0.5}
        assert lam == sorted(lam)
        assert beta[0] == 0.0
        assert beta[-1] == 1.0, "the clustering term acts in every run length"
        assert sum(b > 0 for b in beta) == pytest.approx(2 * n_epochs / 3, abs=1)
    lam300 = [aug_weight_schedule(relative_progress(t, 300)) for t in (99, 100, 199, 200)]
    assert lam300 == [0.01, 0.2, 0.2, 0.5]
    assert [aug_weight_schedule(relative_progress(t, 50), preset="hln") for t in (4, 5, 14, 15)] == [
        0.05,
        0.5,
        0.5,
        1.0,
    ]
    assert rho_schedule(0.0, 2.0) == 0.0
    assert rho_schedule(0.25, 2.0) == 0.5
    assert rho_schedule(2.0, 2.0) == 2.0
    assert LinearSchedule(1.0, 0.0)(0.75) == 0.25
    with pytest.raises(ValueError, match="one more value"):
        StepSchedule((1.0,), (0.5,))
    with pytest.raises(ValueError, match="preset"):
        aug_weight_schedule(0.5, preset="mb")
    with pytest.raises(ValueError, match="n_steps"):
        relative_progress(0, 0)


def test_kmeans_prototypes_and_stable_ids():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    y = np.repeat([0, 1, 2], 50)
    z = torch.as_tensor(centres[y] + rng.normal(size=(150, 2)), dtype=torch.float32)
    protos, labels = kmeans_prototypes(z, 3, normalize=False)
    assert protos.shape == (3, 2)
    assert protos.dtype == z.dtype
    assert labels.dtype == torch.long
    # pretend the previous refresh numbered clusters in the order of the true classes
    prev = torch.as_tensor(centres, dtype=torch.float32)
    for seed in range(4):
        p2, l2 = kmeans_prototypes(z + 0.05, 3, previous=prev, normalize=False, random_state=seed)
        assert torch.equal(l2, torch.as_tensor(y)), "ids follow the previous prototypes"
        torch.testing.assert_close(p2, prev, atol=0.5, rtol=0)
        assert torch.equal(assign_to_prototypes(z, p2, normalize=False), l2)
    perm = match_prototypes(prev[[2, 0, 1]], prev)
    assert perm.tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans_prototypes(z, 0)
