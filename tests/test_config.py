"""Config validation: bad input fails with a message naming the offending key."""

import copy
from pathlib import Path

import pytest

from clustersbi.config import ConfigError, load_schema, load_yaml, validate_config

SCHEMA = "workflow/schemas/config.schema.yaml"


@pytest.fixture
def config(repo):
    return load_yaml(repo / "config" / "config.yaml")


@pytest.fixture
def schema(repo):
    return load_schema(repo / SCHEMA)


SHIPPED_CONFIGS = sorted(
    str(p.relative_to(Path(__file__).parents[1]))
    for pattern in ("config/*.yaml", "tests/config/*.yaml")
    for p in Path(__file__).parents[1].glob(pattern)
)


def test_the_presets_named_in_the_readme_are_shipped():
    for name in ("config/config.yaml", "config/xod.yaml", "config/xod_realistic.yaml",
                 "config/fields.yaml", "config/fields_paper.yaml"):
        assert name in SHIPPED_CONFIGS, name


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_shipped_configs_are_valid(repo, schema, name):
    validate_config(load_yaml(repo / name), schema)


def test_defaults_are_filled(config, schema):
    del config["seed"]
    out = validate_config(config, schema)
    assert out["seed"] == schema["properties"]["seed"]["default"]


def test_every_schema_key_is_described(schema):
    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{path}.{key} has no description"
            walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"

    walk(schema, "config")


def test_inverted_prior_bounds_name_the_key(config, schema):
    config["priors"]["cosmology"][1]["low"] = 1.2
    with pytest.raises(ConfigError, match=r"priors\.cosmology\[1\]\.low.*'sigma_8'"):
        validate_config(config, schema)


def test_unknown_key_is_named(config, schema):
    config["design"]["n_simulation"] = 10
    with pytest.raises(ConfigError, match=r"unknown key design\.n_simulation"):
        validate_config(config, schema)


def test_missing_section_is_named(config, schema):
    del config["priors"]
    with pytest.raises(ConfigError, match="missing key priors"):
        validate_config(config, schema)


def test_chunk_size_below_one_is_named(config, schema):
    config["design"]["chunk_size"] = 0
    with pytest.raises(ConfigError, match=r"design\.chunk_size"):
        validate_config(config, schema)


def test_unknown_distribution_is_named(config, schema):
    config["priors"]["cosmology"][0]["distribution"] = "gaussian"
    with pytest.raises(ConfigError, match=r"priors\.cosmology\[0\]\.distribution"):
        validate_config(config, schema)


def test_splits_must_sum_to_one(config, schema):
    config["design"]["splits"]["train"] = 0.9
    with pytest.raises(ConfigError, match=r"design\.splits"):
        validate_config(config, schema)


def test_loguniform_needs_positive_low(config, schema):
    bad = copy.deepcopy(config)
    bad["priors"]["cosmology"][0].update(distribution="loguniform", low=0.0)
    with pytest.raises(ConfigError, match=r"priors\.cosmology\[0\]\.low"):
        validate_config(bad, schema)
