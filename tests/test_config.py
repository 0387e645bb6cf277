"""Config validation: bad input fails with a message naming the offending key."""

import copy
import re
import dataclasses
import typing
from pathlib import Path

import pytest

from clustersbi.compress.train import CompressorConfig, InputSpec
from clustersbi.config import ANALYSIS_PARAMETERS, PHYSICAL_RANGES, SEED_MAX, ConfigError, load_schema, load_yaml, validate_config
from clustersbi.detect import DetectionConfig
from clustersbi.xod import XOD_STATISTICS
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


def test_two_observations_are_refused(config, schema):
    config["xod"]["observation"] = {"catalogue_csv": "survey.csv"}
    config["infer"] = {**config.get("infer", {}), "observation": {"kind": "file", "file": "x.h5"}}
    with pytest.raises(ConfigError, match=r"infer\.observation\.kind.*xod\.observation\.catalogue_csv"):
        validate_config(config, schema)


def test_loguniform_needs_positive_low(config, schema):
    bad = copy.deepcopy(config)
    bad["priors"]["cosmology"][0].update(distribution="loguniform", low=0.0)
    with pytest.raises(ConfigError, match=r"priors\.cosmology\[0\]\.low"):
        validate_config(bad, schema)


@pytest.mark.parametrize(
    "key, value, message",
    [
        (("simulation", "lightcone", "fixed_mesh"), False,
         r"simulation\.lightcone\.forward: 'fused' needs simulation\.lightcone\.fixed_mesh: true"),
        (("design", "nested"), True, r"simulation\.lightcone\.forward: 'fused' does not paint nested .*design\.nested"),
    ],
    ids=["without-fixed-mesh", "nested"],
)
def test_fused_forward_refuses_what_it_cannot_run_naming_the_key(config, schema, key, value, message):
    """forward: fused runs one compiled program per slab mesh and paints one draw per PM run;
    the same settings with forward: staged are valid."""
    config["simulation"]["lightcone"]["forward"] = "fused"
    _set(config, key, value)
    staged = copy.deepcopy(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config, schema)
    staged["simulation"]["lightcone"]["forward"] = "staged"
    validate_config(staged, schema)


def test_unknown_forward_is_named(config, schema):
    config["simulation"]["lightcone"]["forward"] = "device"
    with pytest.raises(ConfigError, match=r"simulation\.lightcone\.forward: 'device' is not one of \['staged', 'fused'\]"):
        validate_config(config, schema)


# --------------------------------------------------------------------------- physical bounds
# Values that config fuzzing once found accepted (issue 17), and their neighbours: each is
# refused when the config is read, naming the key, instead of failing in a job.


def _set(config, path, value):
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("simulation", "n_steps"), 1e30, r"simulation\.n_steps: 1e\+30 is not an integer"),
        (("simulation", "n_steps"), 10**30, r"simulation\.n_steps: .* greater than the maximum of 10000"),
        (("ldl", "training", "base_iterations"), 1e30, r"ldl\.training\.base_iterations: 1e\+30 is not an integer"),
        (("ldl", "training", "n_feedback"), 1e30, r"ldl\.training\.n_feedback: 1e\+30 is not an integer"),
        (("seed",), 1e30, r"seed: 1e\+30 is not an integer"),
        (("seed",), 2**32, r"seed: 4294967296 is greater than the maximum of 4294967295"),
        (("seed",), 20.0, r"seed: 20\.0 is not an integer"),
        (("priors", "cosmology", 0, "low"), -1.1,
         r"priors\.cosmology\[0\]\.low: Omega_m prior low -1\.1 is outside the physical range \(0\.0, 1\.0\)"),
        (("priors", "cosmology", 1, "high"), 3.5, r"priors\.cosmology\[1\]\.high: sigma_8 prior high 3\.5 is outside"),
        (("priors", "cosmology", 0, "name"), "w0", r"priors\.cosmology\[0\]\.name: 'w0' is not a cosmological parameter"),
        (("priors", "astrophysics", 0, "name"), "A_XYZ", r"priors\.astrophysics\[0\]\.name: analysis 'ldl' has no parameter"),
        (("priors", "astrophysics", 0, "high"), 1e30, r"priors\.astrophysics\[0\]\.high: A_SN1 prior high .* outside"),
        (("cosmology", "fiducial", "h"), 2.5, r"cosmology\.fiducial\.h: 2\.5 is outside the physical range \(0\.0, 2\.0\)"),
        (("cosmology", "fiducial", "n_s"), 0.2, r"cosmology\.fiducial\.n_s: 0\.2 is outside"),
        (("cosmology", "fiducial", "Omega_b"), 0.2,
         r"cosmology\.fiducial\.Omega_b: Omega_b 0\.2 is not below Omega_m 0\.1 \(priors\.cosmology\[0\]\.low\)"),
        (("simulation", "lightcone", "fov_deg2"), float("nan"), r"simulation\.lightcone\.fov_deg2: nan is not a finite number"),
        (("simulation", "lightcone", "fov_deg2"), 41253.0, r"simulation\.lightcone\.fov_deg2: .*maximum of 32400"),
        (("simulation", "lightcone", "z_min"), 0.6, r"simulation\.lightcone\.z_min: must be below simulation\.lightcone\.z_max"),
        (("simulation", "a_init"), 0.9, r"simulation\.lightcone\.z_max: z = 0\.5 is not after the initial conditions"),
        (("design", "chunk_size"), 2.0, r"design\.chunk_size: 2\.0 is not an integer"),
        (("xod", "bins", "z", "high"), 0.05, r"xod\.bins\.z\.low: must be below xod\.bins\.z\.high"),
        (("xray", "bands_kev", 1), [2.0, 1.0], r"xray\.bands_kev\[1\]: the band must be increasing"),
        (("detection", "hr_bands"), [2, 0], r"detection\.hr_bands\[0\]: band 2 does not exist"),
        (("detection", "threshold_mode"), "sigma", r"detection\.threshold_mode: 'sigma' needs detection\.subtract_background"),
        (("xod", "observation", "catalogue_csv"), "", r"xod\.observation\.catalogue_csv: '' should be non-empty"),
    ],
)
def test_nonsensical_values_are_refused_naming_the_key(config, schema, path, value, message):
    _set(config, path, value)
    with pytest.raises(ConfigError, match=message):
        validate_config(config, schema)


def test_the_physical_ranges_accept_the_shipped_priors(repo, schema):
    """Every shipped config's priors and fiducial values lie inside PHYSICAL_RANGES (sanity of the table)."""
    for name in SHIPPED_CONFIGS:
        config = validate_config(load_yaml(repo / name), schema)
        for prior in config["priors"]["cosmology"]:
            lo, hi = PHYSICAL_RANGES[prior["name"]]
            assert lo < prior["low"] < prior["high"] < hi, f"{name}: {prior}"


def test_the_tables_are_the_stages_and_the_schemas(schema):
    """ANALYSIS_PARAMETERS repeats the stages' parameter names; SEED_MAX is every seed's maximum."""
    from clustersbi.stages.ldl import FEEDBACK_NAMES
    from clustersbi.stages.summaries import MLX_NAMES

    assert ANALYSIS_PARAMETERS == {"scaling": tuple(MLX_NAMES), "ldl": tuple(FEEDBACK_NAMES)}
    props = schema["properties"]
    for seed in (props["seed"], props["compress"]["properties"]["seed"], props["infer"]["properties"]["seed"]):
        assert seed["maximum"] == SEED_MAX and seed["minimum"] == 0, seed


def test_every_numeric_key_is_bounded(schema):
    """Integers and numbers have a lower and an upper bound (or an enum) in the schema, except the
    parameter values, which check_semantics bounds by name (PHYSICAL_RANGES, ASTROPHYSICAL_RANGES)."""
    by_name = {"priors.cosmology[].low", "priors.cosmology[].high", "priors.astrophysics[].low",
               "priors.astrophysics[].high", "ldl.camels.snapshots[].parameters.*",
               *(f"cosmology.fiducial.{n}" for n in PHYSICAL_RANGES)}
    unbounded = []

    def walk(node, path):
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        types = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
        if {"integer", "number"} & set(types) and path not in by_name and "enum" not in node:
            if not ({"minimum", "exclusiveMinimum"} & set(node) and {"maximum", "exclusiveMaximum"} & set(node)):
                unbounded.append(path)
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}" if path else key)
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], path + ".*")

    walk(schema, "")
    assert not unbounded, f"numeric keys without a lower and an upper bound: {unbounded}"


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
    (CompressorConfig, "compress", {"tune", "max_memory_mb"}, {"architecture"}),
    (NPEConfig, "infer", {"observation", "diagnostics"}, set()),
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
    assert set(kinds) == {"abundance", "power_spectrum", "fields", "catalogue", *XOD_STATISTICS}
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


def test_xod_analyses_infer_from_single_table3_statistics(repo):
    config = load_yaml(repo / "tests" / "config" / "tiny_xod.yaml")
    config["inference"]["summaries"] = ["xod", "xod_cr_hr", "xod_z_cr", "xod_z"]
    validate_config(copy.deepcopy(config), repo / SCHEMA)
    for bad, message in (("xod+xod_z", "not combinations"), ("abundance", "does not produce")):
        config["inference"]["summaries"] = ["xod", bad]
        with pytest.raises(ConfigError, match=rf"inference.summaries\[1\]: '{re.escape(bad)}'.*{message}"):
            validate_config(copy.deepcopy(config), repo / SCHEMA)


def test_the_catalogue_is_inferred_alone_by_both_simulated_analyses(repo):
    for name in ("tiny.yaml", "tiny_xod.yaml"):
        config = load_yaml(repo / "tests" / "config" / name)
        config["inference"]["summaries"] = ["catalogue"]
        resolved = validate_config(copy.deepcopy(config), repo / SCHEMA)
        assert resolved["catalogue"]["supplementary"] is None and resolved["compress"]["encoder"]["kernel_size"] == 4
    config = load_yaml(repo / "tests" / "config" / "tiny.yaml")
    config["inference"]["summaries"] = ["abundance", "catalogue+abundance"]
    with pytest.raises(ConfigError, match=r"inference.summaries\[1\]: 'catalogue\+abundance'.*alone"):
        validate_config(copy.deepcopy(config), repo / SCHEMA)
    config = load_yaml(repo / "tests" / "config" / "tiny_analytic.yaml")
    config["inference"]["summaries"] = ["catalogue"]
    with pytest.raises(ConfigError, match="does not produce"):
        validate_config(copy.deepcopy(config), repo / SCHEMA)


def test_inferred_parameters_must_name_priors(repo):
    config = load_yaml(repo / "tests" / "config" / "tiny_xod.yaml")
    config["inference"]["parameters"] = ["sigma_8", "Omega_m"]
    validate_config(copy.deepcopy(config), repo / SCHEMA)
    config["inference"]["parameters"] = ["sigma_8", "S8"]
    with pytest.raises(ConfigError, match=r"inference.parameters\[1\]: 'S8' is not a prior's name"):
        validate_config(copy.deepcopy(config), repo / SCHEMA)
    analytic = load_yaml(repo / "tests" / "config" / "tiny_analytic.yaml")
    analytic.setdefault("inference", {})["parameters"] = ["Omega_m"]
    with pytest.raises(ConfigError, match="analytic analysis .* leave it null"):
        validate_config(analytic, repo / SCHEMA)
