"""Config validation: bad input fails with a message naming the offending key."""

import copy
import dataclasses
import typing
from pathlib import Path

import pytest

from clustersbi.compress.train import CompressorConfig, InputSpec
from clustersbi.config import ConfigError, load_schema, load_yaml, validate_config
from clustersbi.detect import DetectionConfig
from clustersbi.npe import NPEConfig

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


# --------------------------------------------------------------------------- one source of defaults
# The schema holds every default; a settings dataclass may repeat one (for use outside the
# workflow) only if it is the same value, and has none where the schema's depends on more
# than the key (InputSpec: per summary kind) or the stage derives the value.

NO_DEFAULT = object()


def _plain(value):
    """Tuples as lists, as they are in YAML."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _field_defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = _plain(f.default_factory())
        else:
            out[f.name] = NO_DEFAULT
    return out


#: (dataclass, schema section, schema keys the stage reads itself, fields the stage derives)
SETTINGS = [
    (CompressorConfig, "compress", {"tune"}, {"architecture"}),
    (NPEConfig, "infer", {"observation"}, set()),
    (DetectionConfig, "detection", set(), set()),
]


@pytest.mark.parametrize("cls, section, stage_keys, derived", SETTINGS, ids=[s[0].__name__ for s in SETTINGS])
def test_dataclass_defaults_are_the_schemas(schema, cls, section, stage_keys, derived):
    props = schema["properties"][section]["properties"]
    defaults = _field_defaults(cls)
    assert set(props) - stage_keys == set(defaults) - derived, (
        f"{cls.__name__} fields and schema section {section} keys differ: "
        f"only in the schema {sorted(set(props) - stage_keys - set(defaults))}, "
        f"only in the class {sorted(set(defaults) - derived - set(props))}")
    for name in derived:
        assert defaults[name] is NO_DEFAULT, f"{cls.__name__}.{name} is derived by the stage: it takes no default"
    for key, default in defaults.items():
        if key in derived:
            continue
        assert "default" in props[key], f"{section}.{key} has no default in the schema"
        if default is not NO_DEFAULT:
            assert default == props[key]["default"], (
                f"{cls.__name__}.{key} defaults to {default!r}, the schema's {section}.{key} to {props[key]['default']!r}")


def test_input_spec_defaults_are_every_kinds(schema):
    kinds = schema["properties"]["compress"]["properties"]["inputs"]["properties"]
    assert set(kinds) == {"abundance", "power_spectrum", "fields", "xod"}
    defaults = _field_defaults(InputSpec)
    for kind, sub in kinds.items():
        props = sub["properties"]
        assert set(props) == set(defaults), f"compress.inputs.{kind} keys {sorted(props)} vs InputSpec {sorted(defaults)}"
        for key, default in defaults.items():
            assert "default" in props[key], f"compress.inputs.{kind}.{key} has no default in the schema"
            if default is not NO_DEFAULT:
                assert default == props[key]["default"], (
                    f"InputSpec.{key} defaults to {default!r}, compress.inputs.{kind}.{key} to {props[key]['default']!r}")
    for key, default in defaults.items():
        per_kind = {repr(kinds[k]["properties"][key]["default"]) for k in kinds}
        if len(per_kind) > 1:
            assert default is NO_DEFAULT, f"InputSpec.{key}: the kinds' defaults differ ({per_kind}); it takes none"


def _enum_fields():
    schema = load_schema(Path(__file__).parents[1] / SCHEMA)["properties"]
    inputs = schema["compress"]["properties"]["inputs"]["properties"]
    sections = [(c, schema[section]["properties"]) for c, section, _, _ in SETTINGS]
    sections += [(InputSpec, inputs[kind]["properties"]) for kind in inputs]
    for cls, props in sections:
        for key, sub in props.items():
            if "enum" in sub and key in {f.name for f in dataclasses.fields(cls)}:
                yield cls, key, sub["enum"]


@pytest.mark.parametrize("cls, key, enum", sorted(set((c, k, tuple(e)) for c, k, e in _enum_fields()),
                                                   key=lambda t: (t[0].__name__, t[1])),
                         ids=lambda v: v.__name__ if isinstance(v, type) else (v if isinstance(v, str) else None))
def test_string_options_are_typed_with_the_schemas_enum(cls, key, enum):
    hint = typing.get_type_hints(cls)[key]
    assert typing.get_origin(hint) is typing.Literal, f"{cls.__name__}.{key} is {hint}, not a Literal"
    options = set(typing.get_args(hint))
    # the extractor also takes 'identity', which the stage sets for a lone mlp input
    assert set(enum) <= options and options - set(enum) <= {"identity"}, (
        f"{cls.__name__}.{key}: Literal {sorted(options)} vs schema enum {sorted(enum)}")
