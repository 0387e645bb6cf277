"""clustersbi.stages.infer (with clustersbi.stages.compress before it): a one-array summary through
compression, NPE training and evaluation, with the rules' named outputs; the observation choice."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from clustersbi.compress.data import TrainingSet, load_training_set, write_training_set
from clustersbi.config import load_yaml, validate_config
from clustersbi.stages.compress import compress_stage, train_compressor_stage
from clustersbi.stages.infer import evaluate_npe_stage, observation_summary, train_npe_stage, xod_statistics_table

SCHEMA = "workflow/schemas/config.schema.yaml"
PRIORS = {
    "cosmology": [{"name": "Omega_m", "label": "", "distribution": "uniform", "low": 0.1, "high": 0.5}],
    "astrophysics": [{"name": "A_SN1", "label": "", "distribution": "loguniform", "low": 0.25, "high": 4.0}],
}
COMPRESS = {"head_hidden": [16], "max_epochs": 40, "patience": 10, "batch_size": 16, "lr": 3e-3, "seed": 0}
INFER = {"density_estimator": "mdn", "num_components": 2, "hidden_features": 16, "max_epochs": 60,
         "batch_size": 32, "n_posterior_samples": 100, "n_calibration_samples": 50, "seed": 0,
         "diagnostics": {"expected_coverage": {"n_samples": 50, "leakage_samples": 200},
                         "lc2st": {"n_null": 3, "n_eval": 100, "n_holdout": 2}}}
#: the compressed Omega_m must follow the truth (counts scale with it)
COMPRESSED_CORR_MIN = 0.8
OMEGA_M_R2_MIN = 0.5


@pytest.fixture(scope="module")
def sections(repo):
    """``compress`` and ``infer`` as the workflow passes them: the values above, schema defaults filled."""
    config = load_yaml(repo / "tests" / "config" / "tiny.yaml")
    # tiny's own priors: A_SN1 (PRIORS) is no parameter of its scaling analysis; the sections do not depend on them
    config.update(compress=dict(COMPRESS), infer=dict(INFER))
    config["design"]["nested"] = False
    config["design"]["n_inner"] = 1
    resolved = validate_config(config, repo / SCHEMA)
    return resolved["compress"], resolved["infer"]


def _training_set(n=520, seed=0):
    rng = np.random.default_rng(seed)
    theta = np.column_stack([rng.uniform(0.1, 0.5, n), np.exp(rng.uniform(np.log(0.25), np.log(4.0), n))])
    rate = 50 * theta[:, :1] * np.array([1.0, 0.7, 0.4]) * (1 + 0.2 * np.log(theta[:, 1:]))
    counts = rng.poisson(np.clip(rate, 0.1, None)).astype(float)
    # every role (clustersbi.design.SPLITS): the NPE fits the npe rows, which the compressor never saw
    split = np.array(["train"] * 280 + ["val"] * 60 + ["npe"] * 100 + ["npe_val"] * 20 + ["test"] * 50 + ["holdout"] * 10)
    return TrainingSet(theta, counts, split, ["Omega_m", "A_SN1"])


def test_observation_is_the_chosen_holdout_or_a_file(tmp_path):
    ts = TrainingSet(np.arange(8.0).reshape(4, 2), np.arange(12.0).reshape(4, 3),
                     np.array(["train", "holdout", "val", "holdout"]), ["a", "b"])
    x, theta, what = observation_summary(ts, {"kind": "holdout", "index": None, "file": None})
    np.testing.assert_array_equal(x, [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(theta, [2.0, 3.0])
    assert what == "holdout mock (row 1)"
    x, _, what = observation_summary(ts, {"kind": "holdout", "index": 1, "file": None})
    assert what == "holdout mock (row 3)" and x[0] == 9.0
    with pytest.raises(ValueError, match="only 2 holdout mocks"):
        observation_summary(ts, {"kind": "holdout", "index": 2, "file": None})
    with h5py.File(tmp_path / "obs.h5", "w") as f:
        f["x"] = np.array([0.3, 0.1])
    x, theta, _ = observation_summary(ts, {"kind": "file", "index": None, "file": str(tmp_path / "obs.h5")})
    np.testing.assert_array_equal(x, [0.3, 0.1])
    assert theta is None


@pytest.mark.slow
def test_single_summary_runs_through_compression_and_npe(tmp_path, sections):
    """A one-array summary (x = counts that depend on theta) through every inference stage."""
    compress, infer = sections
    ts = _training_set()
    n = len(ts.theta)
    write_training_set(tmp_path / "abundance.h5", ts)
    model = tmp_path / "compressor" / "model.pt"
    train_compressor_stage(tmp_path / "abundance.h5", "abundance", compress, model)
    for name in ("model.pt", "history.csv", "normalization.json", "config.json"):
        assert (model.parent / name).exists(), f"train_compressor output {name} missing"
    assert not (model.parent / "last.pt").exists(), "the resume point outlived a completed training"
    assert json.loads((model.parent / "config.json").read_text())["inputs"]["x"]["transform"] == "log10p1"
    compress_stage(tmp_path / "abundance.h5", model, PRIORS, tmp_path / "compressed.h5")
    compressed = load_training_set(tmp_path / "compressed.h5")
    assert compressed.param_names == ["Omega_m", "ln_A_SN1"] and compressed.x.shape == (n, 2)
    np.testing.assert_allclose(compressed.theta[:, 1], np.log(ts.theta[:, 1]))
    corr = np.corrcoef(compressed.x[:, 0], compressed.theta[:, 0])[0, 1]
    assert corr > COMPRESSED_CORR_MIN, f"compressed Omega_m vs truth: correlation {corr:.3f}"
    npe_infer = {k: v for k, v in infer.items() if k not in ("observation", "diagnostics")}  # as rule train_npe passes it
    train_npe_stage(tmp_path / "compressed.h5", PRIORS, npe_infer, tmp_path / "npe.pt", tmp_path / "npe_history.csv")
    outputs = {role: tmp_path / "inference" / name for role, name in
               (("samples", "samples.h5"), ("calibration", "calibration.json"), ("metrics", "metrics.json"),
                ("table", "metrics.csv"))}
    evaluate_npe_stage(tmp_path / "compressed.h5", tmp_path / "npe.pt", infer, outputs)
    metrics = json.loads(outputs["metrics"].read_text())
    r2 = metrics["per_parameter"]["Omega_m"]["r2"]
    assert r2 > OMEGA_M_R2_MIN, f"Omega_m R^2 {r2:.3f}: {metrics['per_parameter']['Omega_m']}"
    assert set(metrics["observation"]["per_parameter"]) == {"Omega_m", "ln_A_SN1"}
    assert metrics["observation"]["description"] == "holdout mock (row 510)"
    with h5py.File(outputs["samples"], "r") as f:
        assert f["test_samples"].shape == (50, infer["n_posterior_samples"], 2)
        np.testing.assert_allclose(f["observation_theta"][()], compressed.theta[510])
    calibration = json.loads(outputs["calibration"].read_text())
    assert np.array(calibration["sbc_ranks"]).shape == (50, 2)
    coverage = calibration["expected_coverage"]
    assert coverage["n_test"] == 50 and len(coverage["coverage"]) == len(coverage["levels"])
    assert coverage["coverage"][0] <= 0.1 and coverage["coverage"][-1] == 1.0, coverage["coverage"]
    lc2st = calibration["lc2st"]
    assert lc2st["observations"] == ["observation", "holdout row 511", "holdout row 512"], lc2st["observations"]
    assert len(lc2st["p_value"]) == 3 and np.array(lc2st["null_statistics"]).shape == (3, 3)
    assert calibration["ensemble"]["weights"] == [1.0]
    assert outputs["table"].read_text().splitlines()[0].startswith("parameter,")


def _metrics(fom, widths, obs_widths):
    """A metrics.json as evaluate_npe_stage writes it, reduced to what Table 3 reads."""
    return {"fom_median": fom, "per_parameter": {n: {"sigma68_mean": w} for n, w in widths.items()},
            "observation": {"fom": 2 * fom, "per_parameter": {n: {"sigma68": w} for n, w in obs_widths.items()}}}


def test_table3_rows_and_widths_relative_to_the_prior(tmp_path):
    from scipy import stats

    priors = {"cosmology": [{"name": "Omega_m", "label": "", "distribution": "uniform", "low": 0.1, "high": 0.5},
                            {"name": "sigma_8", "label": "", "distribution": "uniform", "low": 0.6, "high": 1.0}]}
    files = {}
    for statistic, fom in (("xod", 40.0), ("xod_z", 10.0)):
        files[statistic] = tmp_path / f"{statistic}.json"
        files[statistic].write_text(json.dumps(_metrics(fom, {"Omega_m": 0.05, "sigma_8": fom / 400},
                                                        {"Omega_m": 0.04, "sigma_8": 0.03})))
    table = xod_statistics_table(files, {"xod": "none", "xod_z": "z"}, priors, tmp_path / "table3.csv")
    # the prior's 68% half-width of U(low, high), from scipy's quantiles
    prior = {n: (stats.uniform(lo, hi - lo).ppf(0.84) - stats.uniform(lo, hi - lo).ppf(0.16)) / 2
             for n, lo, hi in (("Omega_m", 0.1, 0.5), ("sigma_8", 0.6, 1.0))}
    assert list(table["statistic"]) == ["xod", "xod_z"] and list(table["marginal"]) == ["none", "z"]
    np.testing.assert_allclose(table["fom_test_median"], [40.0, 10.0])
    np.testing.assert_allclose(table["sigma_8_sigma68_test_over_prior"], [0.1 / prior["sigma_8"], 0.025 / prior["sigma_8"]], rtol=1e-12)
    np.testing.assert_allclose(table["Omega_m_sigma68_prior"], prior["Omega_m"], rtol=1e-12)
    assert (tmp_path / "table3.csv").read_text().splitlines()[0].startswith("statistic,marginal,fom_test_median")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_metrics(1.0, {"Omega_m": 0.05}, {"Omega_m": 0.05})))
    with pytest.raises(ValueError, match="sigma_8"):
        xod_statistics_table({"xod": bad}, {"xod": "none"}, priors, tmp_path / "t.csv")
