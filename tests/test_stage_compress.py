"""clustersbi.stages.compress: the compressor config of a training set from the schema-resolved
``compress`` section (per-kind input defaults live in the schema), and missing kinds named."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from clustersbi.config import load_yaml, validate_config
from clustersbi.design import Prior, to_inference_coordinates
from clustersbi.stages.compress import compressor_config

SCHEMA = "workflow/schemas/config.schema.yaml"
PRIORS = {
    "cosmology": [{"name": "Omega_m", "label": "", "distribution": "uniform", "low": 0.1, "high": 0.5}],
    "astrophysics": [{"name": "A_SN1", "label": "", "distribution": "loguniform", "low": 0.25, "high": 4.0}],
}


@pytest.fixture(scope="module")
def resolve(repo):
    """``compress`` section of the tiny config with ``overrides``, defaults filled by the schema."""
    tiny = load_yaml(repo / "tests" / "config" / "tiny.yaml")

    def _resolve(overrides=None):
        config = copy.deepcopy(tiny)
        config["compress"] = {**config["compress"], **(overrides or {})}
        return validate_config(config, repo / SCHEMA)["compress"]

    return _resolve


def test_single_and_combined_compressor_configs(resolve):
    single = compressor_config("xod", resolve())
    assert single.architecture == "xod_resnet" and list(single.inputs) == ["x"]
    assert single.inputs["x"].transform == "log10p1" and single.inputs["x"].channel_axis == -1
    mlp = compressor_config("abundance", resolve())
    assert mlp.architecture == "mlp" and mlp.inputs["x"].extractor == "identity"
    assert mlp.inputs["x"].transform == "log10p1" and mlp.inputs["x"].standardize == "per_feature"
    fields = compressor_config("fields", resolve())
    assert fields.architecture == "cnn3d" and fields.inputs["x"].channel_axis == 0
    combined = compressor_config("abundance+power_spectrum", resolve({"inputs": {"power_spectrum": {"hidden": [8]}}}))
    assert combined.architecture == "combined" and set(combined.inputs) == {"abundance", "power_spectrum"}
    assert combined.inputs["power_spectrum"].hidden == [8] and combined.inputs["power_spectrum"].transform == "log10"
    # the kind left alone keeps its schema defaults; hidden null leaves the network's default
    assert combined.inputs["abundance"].hidden is None and combined.inputs["abundance"].extractor == "mlp"
    assert combined.max_epochs == 30 and combined.head_hidden == [32, 32], "tiny config values not passed on"


def test_kind_without_inputs_entry_is_named(resolve):
    compress = resolve()
    del compress["inputs"]["xod"]
    with pytest.raises(ValueError, match="compress.inputs has no entry for summary kind 'xod'"):
        compressor_config("xod", compress)


def test_unknown_input_key_is_named_by_the_schema(repo):
    config = load_yaml(repo / "tests" / "config" / "tiny.yaml")
    config["compress"]["inputs"] = {"abundance": {"extractr": "mlp"}}
    with pytest.raises(ValueError, match=r"unknown key compress\.inputs\.abundance\.extractr"):
        validate_config(config, repo / SCHEMA)


def test_inference_coordinates_are_the_prior_box():
    priors = {p["name"]: Prior.from_mapping(p) for s in PRIORS.values() for p in s}
    theta = np.array([[0.3, 1.0], [0.1, 4.0]])
    y, low, high = to_inference_coordinates(theta, ["Omega_m", "A_SN1"], priors)
    np.testing.assert_allclose(y[:, 0], theta[:, 0])
    np.testing.assert_allclose(y[:, 1], np.log(theta[:, 1]))
    np.testing.assert_allclose(low, [0.1, np.log(0.25)])
    np.testing.assert_allclose(high, [0.5, np.log(4.0)])
