"""The inference stage's orchestration: compressor configs, coordinates, a tiny full pass."""

import json

import numpy as np
import pytest

from clustersbi.compress.data import TrainingSet, load_training_set, write_training_set
from clustersbi.design import Prior
from clustersbi.posterior import (
    compress_stage,
    compressor_config,
    evaluate_npe_stage,
    to_inference_coordinates,
    train_compressor_stage,
    train_npe_stage,
)

PRIORS = {
    "cosmology": [{"name": "Omega_m", "label": "", "distribution": "uniform", "low": 0.1, "high": 0.5}],
    "astrophysics": [{"name": "A_SN1", "label": "", "distribution": "loguniform", "low": 0.25, "high": 4.0}],
}
COMPRESS = {"head_hidden": [16], "max_epochs": 40, "patience": 10, "batch_size": 16, "lr": 3e-3, "seed": 0}
INFER = {"density_estimator": "mdn", "num_components": 2, "hidden_features": 16, "max_epochs": 60,
         "batch_size": 32, "n_posterior_samples": 100, "n_calibration_samples": 50, "seed": 0,
         "observation": {"kind": "holdout", "index": None, "file": None}}


def test_single_and_combined_compressor_configs():
    single = compressor_config("xod", {})
    assert single.architecture == "xod_resnet" and list(single.inputs) == ["x"]
    assert single.inputs["x"].transform == "log10p1" and single.inputs["x"].channel_axis == -1
    mlp = compressor_config("abundance", {})
    assert mlp.architecture == "mlp" and mlp.inputs["x"].extractor == "identity"
    combined = compressor_config("abundance+power_spectrum", {"inputs": {"power_spectrum": {"hidden": [8]}}})
    assert combined.architecture == "combined" and set(combined.inputs) == {"abundance", "power_spectrum"}
    assert combined.inputs["power_spectrum"].hidden == [8] and combined.inputs["power_spectrum"].transform == "log10"


def test_inference_coordinates_are_the_prior_box():
    priors = {p["name"]: Prior.from_mapping(p) for s in PRIORS.values() for p in s}
    theta = np.array([[0.3, 1.0], [0.1, 4.0]])
    y, low, high = to_inference_coordinates(theta, ["Omega_m", "A_SN1"], priors)
    np.testing.assert_allclose(y[:, 1], np.log(theta[:, 1]))
    np.testing.assert_allclose(low, [0.1, np.log(0.25)])
    np.testing.assert_allclose(high, [0.5, np.log(4.0)])


@pytest.mark.slow
def test_single_summary_runs_through_compression_and_npe(tmp_path):
    """A one-array summary (x = counts that depend on theta) through every inference stage."""
    rng = np.random.default_rng(0)
    n = 400
    theta = np.column_stack([rng.uniform(0.1, 0.5, n), np.exp(rng.uniform(np.log(0.25), np.log(4.0), n))])
    rate = 50 * theta[:, :1] * np.array([1.0, 0.7, 0.4]) * (1 + 0.2 * np.log(theta[:, 1:]))
    counts = rng.poisson(np.clip(rate, 0.1, None)).astype(float)
    split = np.array(["train"] * 280 + ["val"] * 60 + ["test"] * 50 + ["holdout"] * 10)
    write_training_set(tmp_path / "abundance.h5", TrainingSet(theta, counts, split, ["Omega_m", "A_SN1"]))
    model_dir = tmp_path / "compressor"
    train_compressor_stage(tmp_path / "abundance.h5", "abundance", COMPRESS, model_dir)
    compress_stage(tmp_path / "abundance.h5", model_dir, PRIORS, tmp_path / "compressed.h5")
    compressed = load_training_set(tmp_path / "compressed.h5")
    assert compressed.param_names == ["Omega_m", "ln_A_SN1"] and compressed.x.shape == (n, 2)
    # the counts carry Omega_m: its compressed summary correlates with the truth
    assert np.corrcoef(compressed.x[:, 0], compressed.theta[:, 0])[0, 1] > 0.8
    train_npe_stage(tmp_path / "compressed.h5", PRIORS, INFER, tmp_path / "npe.pt", tmp_path / "npe_history.csv")
    evaluate_npe_stage(tmp_path / "compressed.h5", tmp_path / "npe.pt", INFER, tmp_path / "inference")
    metrics = json.loads((tmp_path / "inference" / "metrics.json").read_text())
    assert metrics["per_parameter"]["Omega_m"]["r2"] > 0.5, metrics["per_parameter"]["Omega_m"]
    assert set(metrics["observation"]["per_parameter"]) == {"Omega_m", "ln_A_SN1"}
