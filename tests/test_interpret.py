"""Interpretation of the catalogue encoder (clustersbi.interpret and the interpret_catalogue
stage): leave-one-out against a prediction whose answer is known, saliency only on a cluster's
own non-supplementary features, the overspecialised check, the terse mass proxy, and the
stage's JSON and figures on a trained toy encoder."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from clustersbi import interpret as it
from clustersbi.compress import CompressorConfig, TrainingSet, train_compressor, write_training_set
from clustersbi.compress.networks import CatalogueEncoder
from clustersbi.io import h5_write_attrs
from clustersbi.plots.catalogue import plot_interpretation
from clustersbi.stages.catalogue import interpret_catalogue_stage


def test_leave_one_out_of_a_sum_is_minus_the_cluster():
    x = np.full((3, 4, 2), np.nan)
    x[0, :3] = [[1, 0], [2, 0], [5, 0]]
    x[2, :1] = [[7, 0]]

    def predict(a):
        return np.nansum(a[..., :1], axis=1)

    delta, mock, slot = it.leave_one_out(predict, x)
    assert np.allclose(delta[:, 0], [-1, -2, -5, -7]) and list(mock) == [0, 0, 0, 2] and list(slot) == [0, 1, 2, 0]
    cdfs = it.threshold_cdfs(delta, np.array([13.0, 14.0, 15.0, 14.5]), [14.0])
    assert cdfs[0]["n_clusters"] == 3 and cdfs[0]["fraction_negative"] == [1.0]


def test_saliency_reaches_only_non_supplementary_features():
    torch.manual_seed(0)
    enc = CatalogueEncoder((5, 3), hidden=[8], channels=[4], supplementary=[1]).eval()
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    x[1, 3:] = np.nan
    s = it.encoder_saliency(enc, x)
    assert np.all(s[..., 1] == 0) and np.all(s[1, 3:] == 0) and np.all(s[0, :, 0] > 0)


def test_partial_correlation_flags_a_terse_value_that_knows_the_cosmology():
    rng = np.random.default_rng(1)
    mass = rng.uniform(13.5, 15, 3000)
    sigma8 = rng.uniform(0.6, 1.0, 3000)
    honest = 2 * mass + rng.normal(0, 0.1, 3000)
    assert abs(it.partial_correlation(honest, sigma8, mass)) < 0.05
    leaky = honest + 0.5 * (sigma8 - 0.8)
    assert it.partial_correlation(leaky, sigma8, mass) > 0.3
    assert it.correlation(honest, mass)["pearson"] > 0.99


def test_mass_proxy_fit_of_an_exact_line_and_catalogue_offsets():
    mass = np.linspace(13.5, 15, 40)
    mock = np.repeat(np.arange(4), 10)
    fit = it.fit_mass_proxy((mass - 14) / 0.5, mass, mock)
    assert np.isclose(fit["slope"], 0.5) and np.isclose(fit["intercept"], 14) and fit["scatter_dex"] < 1e-10
    offset = it.fit_mass_proxy((mass - 14) / 0.5 + 0.2 * mock, mass, mock)
    assert offset["scatter_dex"] > 0.01 and offset["scatter_within_dex"] < offset["scatter_dex"]


@pytest.mark.parametrize("with_mass", [True, False], ids=["scaling-like", "ldl-like"])
def test_interpret_stage_on_a_trained_toy(tmp_path, with_mass):
    from test_catalogue_encoder import toy_catalogues

    theta, x, log_m = toy_catalogues(200, seed=5, n_max=60)
    x = np.concatenate([x, (log_m + 0.05)[..., None]], axis=-1)  # a mass proxy, joined at the terse layer
    x[0] = np.nan  # an empty catalogue
    split = np.array(["train"] * 150 + ["val"] * 25 + ["test"] * 25)
    training = tmp_path / "catalogue.h5"
    # a second design parameter the compressor does not estimate (inference.parameters: [sigma_8])
    theta = np.column_stack([theta, np.random.default_rng(0).uniform(0, 1, len(theta))])
    write_training_set(training, TrainingSet(theta, x, split, ["sigma_8", "nuisance"]))
    with h5py.File(training, "a") as f:
        f["counts"] = (~np.isnan(x).all(-1)).sum(1)
        if with_mass:
            f["log_mass"] = np.where(np.isnan(x[..., 0]), np.nan, log_m)
        h5_write_attrs(f, {"feature_names": ["log_l_x", "log_t", "log_mass_proxy"], "sort_feature": "log_l_x",
                           "supplementary_features": ["log_mass_proxy"]})
    cfg = CompressorConfig(
        architecture="catalogue_encoder",
        inputs={"x": {"extractor": "catalogue_encoder", "transform": "none", "standardize": "per_column", "channel_axis": None}},
        encoder={"hidden": [16], "channels": [8], "supplementary": [2]}, head_hidden=[16], max_epochs=3, batch_size=32)
    train_compressor(TrainingSet(theta, x, split, ["sigma_8", "nuisance"]).select_parameters(["sigma_8"]), cfg,
                     tmp_path / "model", device="cpu")
    plots = {k: tmp_path / f"{k}.png" for k in ("leave_one_out", "saliency", "terse", "mass_proxy")}
    out = tmp_path / "interpretation.json"
    interpret_catalogue_stage(training, tmp_path / "model" / "model.pt",
                              {"split": "test", "mass_thresholds": None, "n_mass_bins": 3, "overspecialized_rho": 0.1},
                              out, tmp_path / "clusters.h5")
    plot_interpretation(tmp_path / "clusters.h5", out, plots)
    summary = json.loads(out.read_text())
    n_clusters = int((~np.isnan(x[175:]).all(-1)).sum())
    assert summary["n_clusters"] == n_clusters and summary["mass_proxy"] == "log_mass_proxy"
    assert summary["fixed_mass"] == ("log_mass" if with_mass else "log_mass_proxy")
    assert summary["leave_one_out"]["estimated_parameters"] == ["sigma_8"]
    assert len(summary["leave_one_out"]["median_abs_delta"]) == 1
    expected = {"log_l_x", "log_t", "log_mass_proxy", "n_clusters", "sigma_8", "nuisance"} | ({"log_mass"} if with_mass else set())
    assert set(summary["terse_correlations"]) == expected
    assert summary["saliency"]["mean_per_feature"]["log_mass_proxy"] == 0.0
    assert len(summary["saliency"]["mean_per_feature_and_mass_bin"]) == 3
    assert len(summary["leave_one_out"]["above_thresholds"]) == 3  # the proxy's quantiles
    assert ("terse_mass_proxy" in summary) == with_mass
    if with_mass:
        assert {"slope", "scatter_within_fraction"} <= set(summary["terse_mass_proxy"])
    assert isinstance(summary["overspecialized"], bool) and "sigma_8" in summary["terse_partial_correlations_at_fixed_mass"]
    assert all(p.stat().st_size > 1000 for p in plots.values())
