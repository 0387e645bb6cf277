"""Split roles (cerardi section 3.1): the compressor sees train/val, the NPE sees npe/npe_val only."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from clustersbi.compress.data import TrainingSet, write_training_set
from clustersbi.config import ConfigError, load_yaml, validate_config
from clustersbi.design import SPLITS, DesignSpec, assign_split, design_table
from clustersbi.npe import load_npe
from clustersbi.stages.infer import train_npe_stage

SCHEMA = "workflow/schemas/config.schema.yaml"
#: a linear-Gaussian toy: y = theta + noise; the NPE's posterior mean must follow y
NOISE = 0.05
#: |posterior mean - y| allowed for the toy NPE, far below the prior's spread (0.29)
MEAN_ATOL = 0.1


@pytest.fixture(scope="module")
def default_config(repo):
    return validate_config(load_yaml(repo / "config" / "config.yaml"), repo / SCHEMA)


def test_roles_are_disjoint_and_cover_the_design(default_config):
    table = design_table(DesignSpec.from_config(default_config))
    counts = Counter(table["split"])
    assert set(counts) <= set(SPLITS)
    for role in ("train", "val", "test", "npe", "npe_val"):
        assert counts[role] > 0, f"default config has no {role} simulations: {dict(counts)}"
    # one role per simulation, and all mocks of a simulation share it
    assert table.groupby("simulation")["split"].nunique().max() == 1
    assert sum(counts.values()) == len(table)


def test_assignment_is_stable_when_fractions_of_later_roles_are_added():
    """Appending roles with zero weight changes no existing assignment."""
    old = [assign_split(7, i, (0.5, 0.25, 0.25, 0.0)) for i in range(200)]
    new = [assign_split(7, i, (0.5, 0.25, 0.25, 0.0, 0.0, 0.0)) for i in range(200)]
    assert old == new


@pytest.mark.parametrize("role", ["npe", "npe_val", "val"])
def test_a_config_without_a_role_is_refused_naming_it(repo, role):
    config = load_yaml(repo / "config" / "config.yaml")
    splits = config["design"]["splits"]
    splits["train"] += splits[role]
    splits[role] = 0.0
    with pytest.raises(ConfigError, match=f"design.splits.{role}"):
        validate_config(config, repo / SCHEMA)


def test_npe_trains_only_on_npe_rows(tmp_path, default_config):
    """Rows of every other role hold NaN summaries: the NPE fits only if it never reads them."""
    rng = np.random.default_rng(1)
    roles = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10 + ["npe"] * 300 + ["npe_val"] * 60)
    theta = rng.uniform(0.1, 0.5, size=(roles.size, 1))
    y = theta + NOISE * rng.standard_normal(theta.shape)
    y[~np.isin(roles, ["npe", "npe_val"])] = np.nan
    compressed = tmp_path / "compressed.h5"
    write_training_set(compressed, TrainingSet(theta, y, roles, ["Omega_m"]))
    priors = {"cosmology": [{"name": "Omega_m", "label": "x", "distribution": "uniform", "low": 0.1, "high": 0.5}]}
    infer = {**default_config["infer"], "max_epochs": 200, "density_estimator": "mdn", "num_components": 2}
    model = tmp_path / "npe.pt"
    train_npe_stage(compressed, priors, infer, model, tmp_path / "history.csv")
    npe = load_npe(model, device="cpu")
    import torch

    samples = npe.posterior.sample((2000,), x=torch.tensor([[0.3]], dtype=torch.float32), show_progress_bars=False)
    mean = float(samples.mean())
    assert abs(mean - 0.3) < MEAN_ATOL, f"posterior mean {mean:.3f} for y = 0.3 (toy noise {NOISE})"
