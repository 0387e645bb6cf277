"""Configuration: schema validation with messages that name the offending key.

The workflow validates its config with :func:`validate_config` before any job runs. The
JSON schema (``workflow/schemas/config.schema.yaml``) fixes the structure (no unknown keys,
types, ranges, defaults); :func:`check_semantics` adds the checks a schema cannot express:
physical ranges of the cosmological parameters (:data:`PHYSICAL_RANGES`, on the fiducial
values and on every prior bound), bounds in order (low < high), split fractions summing to
one, and relations between keys (redshifts after the initial conditions, band indices).

Types are strict: an integer key takes an integer, not a float such as ``1e30`` (JSON
Schema would accept ``3.0``), and a number must be finite (NaN passes every JSON Schema
bound).
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from .xod import XOD_STATISTICS

__all__ = ["load_schema", "canonical", "prepend_to_pythonpath", "ConfigError", "load_yaml", "validate_config", "check_semantics", "key_path",
           "PHYSICAL_RANGES", "ASTROPHYSICAL_RANGES", "ANALYSIS_PARAMETERS", "SEED_MAX", "MAX_CHUNKS"]


class ConfigError(ValueError):
    """A configuration value is invalid; the message starts with the key's dotted path."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    with open(path) as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def key_path(parts) -> str:
    """Dotted path of a key, with list positions in brackets: ``priors.cosmology[1].low``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _fill_defaults(instance: Any, schema: Mapping[str, Any]) -> None:
    """Insert schema defaults for missing keys of objects, recursively (in place)."""
    if isinstance(instance, dict) and schema.get("type") == "object":
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(instance[key], sub)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(item, schema["items"])


def _is_integer(_checker, instance: Any) -> bool:
    """Strict JSON Schema integers: Python ints, not bools, not integral floats (``1e30``)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(_checker, instance: Any) -> bool:
    """Finite numbers only: NaN compares false with every bound, so it would pass them all."""
    if isinstance(instance, bool) or not isinstance(instance, (int, float)):
        return False
    return math.isfinite(instance)


#: Draft 7 with the strict integer and finite number types above
_Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number}),
)


def _describe(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    if error.validator == "type" and isinstance(error.instance, float):
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        if not math.isfinite(error.instance) and {"number", "integer"} & set(wanted):
            return f"{key_path(path)}: {error.instance} is not a finite number"
        if "integer" in wanted and "number" not in wanted:
            return f"{key_path(path)}: {error.instance!r} is not an integer (write it without a decimal point or exponent)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        names = ", ".join(key_path(path + [u]) for u in unknown)
        return f"unknown key {names} (allowed here: {', '.join(allowed)})"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing key {key_path(path + [missing])}"
    return f"{key_path(path)}: {error.message}"


#: Largest seed (the schema's maximum of every seed key): unsigned 32-bit integers (JAX PRNG
#: keys, numpy, Pinocchio's seed % 2^31)
SEED_MAX = 2**32 - 1

#: Physical ranges of the cosmological parameters, open intervals (low, high): the fiducial
#: values and both bounds of every prior on these names must lie inside. Flat Lambda-CDM
#: (clustersbi.cosmology.Cosmology) needs 0 < Omega_b < Omega_m < 1, checked across fiducial
#: and priors too. The other limits are far outside any data set but keep CAMB and the
#: mass function meaningful: h = 2 is H0 = 200 km/s/Mpc, sigma_8 = 3 puts most mass in
#: collapsed halos at z = 0, n_s outside (0.5, 1.5) is no inflationary spectrum.
PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "Omega_m": (0.0, 1.0),  # total matter density (with Lambda: flat, Omega_Lambda = 1 - Omega_m > 0)
    "Omega_b": (0.0, 1.0),  # baryon density; also < Omega_m
    "h": (0.0, 2.0),  # H0 / (100 km/s/Mpc)
    "sigma_8": (0.0, 3.0),  # rms linear fluctuation in 8 Mpc/h spheres at z = 0
    "n_s": (0.5, 1.5),  # primordial spectral index
}

#: Ranges of astrophysical parameters by prior name, where a value outside is nonsense: the
#: M-L_X coefficients of log10 L_X as in the schema's scaling.fiducial (10 dex is beyond any
#: relation), its scatter a standard deviation; the feedback amplitudes multiply the
#: fiducial feedback as powers (CAMELS varies them in [0.25, 4]).
ASTROPHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    "a_X": (-10.0, 10.0),
    "b_X": (-10.0, 10.0),
    "c_X": (-10.0, 10.0),
    "sigma_tot": (0.0, 10.0),
    "A_SN1": (0.0, 100.0),
    "A_SN2": (0.0, 100.0),
    "A_AGN1": (0.0, 100.0),
    "A_AGN2": (0.0, 100.0),
}

#: The astrophysical parameters each analysis draws on (a prior on another name would vary
#: nothing): the M-L_X relation (clustersbi.stages.summaries.MLX_NAMES) and the feedback
#: amplitudes of the gas model (clustersbi.stages.ldl.FEEDBACK_NAMES), repeated here because
#: the workflow imports this module when it builds the DAG and the stages import JAX (a test
#: keeps them equal). An analysis missing here is not checked.
ANALYSIS_PARAMETERS: dict[str, tuple[str, ...]] = {
    "scaling": ("a_X", "b_X", "c_X", "sigma_tot"),
    "ldl": ("A_SN1", "A_SN2", "A_AGN1", "A_AGN2"),
}

#: Most chunks (jobs per chunked stage) a design may have: the DAG is built at every call
MAX_CHUNKS = 100_000


def _outside(value: float, bounds: tuple[float, float]) -> bool:
    return not bounds[0] < value < bounds[1]


def _check_parameter_ranges(config: Mapping[str, Any]) -> None:
    """Fiducial values and prior bounds within :data:`PHYSICAL_RANGES` (and the astrophysical ones)."""
    fiducial = config.get("cosmology", {}).get("fiducial", {})
    for name, value in fiducial.items():
        if name in PHYSICAL_RANGES and _outside(value, PHYSICAL_RANGES[name]):
            raise ConfigError(
                f"cosmology.fiducial.{name}: {value} is outside the physical range {PHYSICAL_RANGES[name]}"
            )
    for section, ranges in (("cosmology", PHYSICAL_RANGES), ("astrophysics", ASTROPHYSICAL_RANGES)):
        for i, prior in enumerate(config.get("priors", {}).get(section, [])):
            where = key_path(["priors", section, i])
            name = prior["name"]
            if section == "cosmology" and name not in PHYSICAL_RANGES:
                raise ConfigError(
                    f"{where}.name: '{name}' is not a cosmological parameter (one of {', '.join(PHYSICAL_RANGES)})"
                )
            known = ANALYSIS_PARAMETERS.get(config.get("analysis", "scaling"))
            if section == "astrophysics" and known is not None and name not in known:
                raise ConfigError(
                    f"{where}.name: analysis '{config.get('analysis', 'scaling')}' has no parameter '{name}' "
                    f"(its astrophysical parameters: {', '.join(known)})"
                )
            if name not in ranges:
                continue
            for end in ("low", "high"):
                if _outside(prior[end], ranges[name]):
                    raise ConfigError(
                        f"{where}.{end}: {name} prior {end} {prior[end]} is outside the physical range {ranges[name]}"
                    )
    for i, snapshot in enumerate(_section(config, "ldl", "camels").get("snapshots", [])):
        for name, value in snapshot.get("parameters", {}).items():
            bounds = PHYSICAL_RANGES.get(name, ASTROPHYSICAL_RANGES.get(name))
            if bounds is not None and _outside(value, bounds):
                raise ConfigError(
                    f"ldl.camels.snapshots[{i}].parameters.{name}: {value} is outside the physical range {bounds}"
                )
    # Omega_b < Omega_m at every point of the prior box: the largest Omega_b below the smallest Omega_m
    cosmology_priors = config.get("priors", {}).get("cosmology", [])
    ends = {}
    for name, end in (("Omega_b", "high"), ("Omega_m", "low")):
        i = next((i for i, p in enumerate(cosmology_priors) if p["name"] == name), None)
        if i is not None:
            ends[name] = (cosmology_priors[i][end], key_path(["priors", "cosmology", i, end]))
        elif name in fiducial:
            ends[name] = (fiducial[name], f"cosmology.fiducial.{name}")
    if len(ends) == 2 and ends["Omega_b"][0] >= ends["Omega_m"][0]:
        raise ConfigError(
            f"{ends['Omega_b'][1]}: Omega_b {ends['Omega_b'][0]} is not below Omega_m {ends['Omega_m'][0]} "
            f"({ends['Omega_m'][1]}); flat Lambda-CDM needs 0 < Omega_b < Omega_m"
        )


def _section(config: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    node: Any = config
    for key in keys:
        node = node.get(key, {}) if isinstance(node, Mapping) else {}
    return node if isinstance(node, Mapping) else {}


#: (section path, low key, high key): pairs that must be in order, low < high
_ORDERED = [
    (("cosmology",), "k_min_h_mpc", "k_max_h_mpc"),
    (("simulation", "lightcone"), "z_min", "z_max"),
    (("summaries", "abundance", "thresholds"), "low", "high"),
    (("xray", "table"), "kt_min_kev", "kt_max_kev"),
    (("xod", "bins", "log_cr"), "low", "high"),
    (("xod", "bins", "hr"), "low", "high"),
    (("xod", "bins", "z"), "low", "high"),
]


def _check_orders(config: Mapping[str, Any]) -> None:
    for keys, lo, hi in _ORDERED:
        node = _section(config, *keys)
        if lo in node and hi in node and not node[lo] < node[hi]:
            where = key_path(keys)
            raise ConfigError(f"{where}.{lo}: must be below {where}.{hi}, got {node[lo]} >= {node[hi]}")


def _check_relations(config: Mapping[str, Any]) -> None:
    """Relations between keys of different sections that a job would otherwise trip on."""
    simulation = _section(config, "simulation")
    analysis = config.get("analysis", "scaling")
    if "a_init" in simulation:
        # every snapshot or slab must come after the initial conditions: a > a_init
        z_init = 1.0 / simulation["a_init"] - 1.0
        later = [("simulation.z_snapshot", simulation.get("z_snapshot"))] if analysis == "scaling" else [
            ("simulation.lightcone.z_max", _section(simulation, "lightcone").get("z_max")),
            ("ldl.training.z_base", _section(config, "ldl", "training").get("z_base")),
        ]
        for where, z in later:
            if z is not None and z >= z_init:
                raise ConfigError(
                    f"{where}: z = {z} is not after the initial conditions at simulation.a_init = "
                    f"{simulation['a_init']} (z = {z_init:.4g})"
                )
    design = _section(config, "design")
    if "n_simulations" in design and "chunk_size" in design:
        chunks = -(-design["n_simulations"] // design["chunk_size"])
        if chunks > MAX_CHUNKS:
            raise ConfigError(
                f"design.chunk_size: {chunks} chunks (jobs per stage) exceed {MAX_CHUNKS}; raise design.chunk_size"
            )
    xray = _section(config, "xray")
    bands = xray.get("bands_kev", [])
    builtin = not _section(xray, "response").get("arf") and not _section(xray, "response").get("rmf")
    for i, (lo, hi) in enumerate(bands):
        if not lo < hi:
            raise ConfigError(f"xray.bands_kev[{i}]: the band must be increasing, got [{lo}, {hi}] keV")
        if builtin and not (0.15 <= lo and hi <= 12.0):
            raise ConfigError(
                f"xray.bands_kev[{i}]: [{lo}, {hi}] keV leaves the built-in XMM response (0.15-12 keV); "
                "name an ARF/RMF in xray.response for other energies"
            )
    realistic = _section(xray, "realistic")
    background = realistic.get("background_cts_s_arcmin2", [])
    if realistic.get("background") and len(background) not in (1, len(bands)):
        raise ConfigError(
            f"xray.realistic.background_cts_s_arcmin2: {len(background)} values for {len(bands)} bands "
            "(one per band, or one for all)"
        )
    detection = _section(config, "detection")
    for i, band in enumerate(detection.get("hr_bands", [])):
        if bands and band >= len(bands):
            raise ConfigError(f"detection.hr_bands[{i}]: band {band} does not exist ({len(bands)} bands in xray.bands_kev)")
    if len(set(detection.get("hr_bands", []))) == 1:
        raise ConfigError("detection.hr_bands: numerator and denominator are the same band")
    if detection.get("threshold_mode") == "sigma" and not detection.get("subtract_background"):
        raise ConfigError("detection.threshold_mode: 'sigma' needs detection.subtract_background: true")
    fov = _section(simulation, "lightcone").get("fov_deg2")
    if fov is not None and "pixel_arcmin" in xray and xray["pixel_arcmin"] > 60.0 * math.sqrt(fov):
        raise ConfigError(
            f"xray.pixel_arcmin: {xray['pixel_arcmin']} arcmin exceeds the field side "
            f"({60.0 * math.sqrt(fov):.4g} arcmin from simulation.lightcone.fov_deg2)"
        )
    catalogue = _section(config, "xod", "observation").get("catalogue_csv")
    if catalogue and _section(config, "infer", "observation").get("kind") == "file":
        raise ConfigError(
            "infer.observation.kind: 'file' and xod.observation.catalogue_csv both name an observation; "
            "the catalogue is the xod posterior's observation: drop one"
        )
    _check_cnn_grid(config)
    _check_fused_forward(config)


def _check_fused_forward(config: Mapping[str, Any]) -> None:
    """``simulation.lightcone.forward: fused`` (:func:`clustersbi.forward.slab_maps`) runs one
    compiled device program per slab mesh and one LDL painting per PM run of a slab."""
    lightcone = _section(config, "simulation", "lightcone")
    if lightcone.get("forward") != "fused":
        return
    if not lightcone.get("fixed_mesh", True):
        raise ConfigError(
            "simulation.lightcone.forward: 'fused' needs simulation.lightcone.fixed_mesh: true (the fused "
            "program compiles once per slab mesh; without a fixed mesh every slab of every simulation has its "
            "own, a compilation per slab); set fixed_mesh: true or forward: staged"
        )
    if _section(config, "design").get("nested"):
        raise ConfigError(
            "simulation.lightcone.forward: 'fused' does not paint nested feedback draws (design.nested: true): "
            "the staged chain paints every draw on one PM run of a slab, the fused program would rerun the PM "
            "per draw; set forward: staged"
        )


def _check_cnn_grid(config: Mapping[str, Any]) -> None:
    """A 3D CNN halves the field grid per block: summaries.fields.n_mesh >= 2^compress.n_blocks."""
    compress = _section(config, "compress")
    if _section(compress, "inputs", "fields").get("extractor") != "cnn3d" or "n_blocks" not in compress:
        return
    uses_fields = any("fields" in name.split("+") for name in config.get("inference", {}).get("summaries", []))
    n_mesh = _section(config, "summaries", "fields").get("n_mesh")
    if config.get("analysis", "scaling") == "scaling" and uses_fields and n_mesh is not None:
        if n_mesh < 2 ** compress["n_blocks"]:
            raise ConfigError(
                f"compress.n_blocks: {compress['n_blocks']} blocks need summaries.fields.n_mesh >= "
                f"{2 ** compress['n_blocks']}, got {n_mesh}"
            )


def check_semantics(config: Mapping[str, Any]) -> None:
    """Checks beyond the schema's reach; raises :class:`ConfigError` naming the key.

    Expects a config that passed the schema (types are right); sections may be absent.
    """
    for section, priors in config.get("priors", {}).items():
        for i, prior in enumerate(priors):
            where = key_path(["priors", section, i])
            if prior["low"] >= prior["high"]:
                raise ConfigError(
                    f"{where}.low: prior '{prior['name']}' has low ({prior['low']}) >= high ({prior['high']})"
                )
            if prior["distribution"] == "loguniform" and prior["low"] <= 0:
                raise ConfigError(f"{where}.low: loguniform prior '{prior['name']}' needs low > 0")
    names = [p["name"] for priors in config.get("priors", {}).values() for p in priors]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"priors: parameter names appear twice: {duplicated}")
    _check_parameter_ranges(config)
    design = config.get("design", {})
    if "splits" in design:
        total = sum(design["splits"].values())
        if abs(total - 1.0) > 1e-9:
            raise ConfigError(f"design.splits: fractions must sum to 1, got {total}")
        for role, why in (("train", "the compressor's training rows"), ("val", "the compressor's early stopping"),
                          ("npe", "the NPE trains on simulations the compressor never saw"),
                          ("npe_val", "the NPE's early stopping")):
            if design["splits"].get(role, 0) <= 0:
                raise ConfigError(f"design.splits.{role}: must be > 0 ({why})")
    _check_inference_summaries(config)
    _check_inferred_parameters(config, names)
    if design.get("nested") and not config.get("priors", {}).get("astrophysics"):
        raise ConfigError("design.nested: a nested design needs priors.astrophysics")
    if not design.get("nested", True) and design.get("n_inner", 1) != 1:
        raise ConfigError("design.n_inner: must be 1 unless design.nested is true")
    _check_orders(config)
    _check_relations(config)
    _check_images(config)


def _check_images(config: Mapping[str, Any]) -> None:
    """The cutout source's own inputs: a file for 'user', existing design chunks for 'simulation'."""
    images = config.get("images") or {}
    source = images.get("source")
    if source == "user" and not images.get("cutout_file"):
        raise ConfigError("images.cutout_file: needed with images.source: user")
    if source == "simulation":
        design = config.get("design", {})
        n_chunks = -(-int(design.get("n_simulations", 1)) // int(design.get("chunk_size", 1)))
        wanted = int((images.get("simulation") or {}).get("n_chunks", 1))
        if wanted > n_chunks:
            raise ConfigError(f"images.simulation.n_chunks: {wanted} chunks wanted, the design has {n_chunks} "
                              f"(design.n_simulations / design.chunk_size)")


def load_schema(path: str | Path) -> dict[str, Any]:
    """The config schema: ``path`` plus the stage sections in ``sections/*.yaml`` beside it.

    Each stage keeps the schema of its own config sections in its own file (a mapping with
    ``properties``); they are merged into the top-level ``properties``.
    """
    schema = load_yaml(path)
    for section_file in sorted((Path(path).parent / "sections").glob("*.yaml")):
        for key, sub in load_yaml(section_file).get("properties", {}).items():
            if key in schema["properties"]:
                raise ConfigError(f"schema section {section_file.name} redefines '{key}'")
            schema["properties"][key] = sub
    return schema


#: what each analysis infers from when ``inference.summaries`` is null
DEFAULT_INFERENCE_SUMMARIES = {"scaling": ["abundance+power_spectrum"], "ldl": ["xod"], "analytic": ["xod"],
                               "cluster_images": []}  # per-cluster masses: no cosmological inference


def _default_inference_summaries(config: dict[str, Any]) -> None:
    inference, analysis = config.get("inference"), config.get("analysis", "scaling")
    # an unknown analysis is left to the schema, which names it
    if isinstance(inference, dict) and inference.get("summaries") is None and analysis in DEFAULT_INFERENCE_SUMMARIES:
        inference["summaries"] = list(DEFAULT_INFERENCE_SUMMARIES[analysis])


def _check_inferred_parameters(config: Mapping[str, Any], prior_names: list[str]) -> None:
    """``inference.parameters`` must name priors; the analytic analysis infers every parameter."""
    wanted = (config.get("inference") or {}).get("parameters")
    if wanted is None:
        return
    for i, name in enumerate(wanted):
        if name not in prior_names:
            raise ConfigError(f"inference.parameters[{i}]: '{name}' is not a prior's name (priors name {prior_names})")
    if config.get("analysis") == "analytic" and list(wanted) != prior_names:
        raise ConfigError("inference.parameters: the analytic analysis compares the NPE with exact posteriors over "
                          "every parameter; leave it null")


def _check_inference_summaries(config: Mapping[str, Any]) -> None:
    """Every inferred training set must be one the configured analysis produces."""
    analysis = config.get("analysis", "scaling")
    # the XOD analyses gather every XOD statistic of cerardi Table 3 (clustersbi.xod.XOD_STATISTICS)
    produced = set(config.get("summaries", {}).get("kinds", [])) if analysis == "scaling" else set(XOD_STATISTICS)
    if analysis in ("scaling", "ldl"):
        produced.add("catalogue")  # the per-cluster feature tables of the catalogue stage
    for i, name in enumerate(config.get("inference", {}).get("summaries", [])):
        if "catalogue" in name.split("+") and name != "catalogue":
            raise ConfigError(f"inference.summaries[{i}]: '{name}': the catalogue encoder takes the catalogue alone, "
                              "not combined with other summaries")
        if analysis != "scaling" and "+" in name:
            raise ConfigError(f"inference.summaries[{i}]: '{name}': analysis '{analysis}' infers from one XOD statistic "
                              f"at a time ({', '.join(XOD_STATISTICS)}), not combinations")
        missing = sorted(set(name.split("+")) - produced)
        if missing:
            raise ConfigError(
                f"inference.summaries[{i}]: '{name}' needs {missing}, which analysis '{analysis}' does not produce "
                f"(it produces {sorted(produced)})"
            )


def validate_config(config: dict[str, Any], schema: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """Fill defaults, validate against the schema, run :func:`check_semantics`.

    Args:
        config: the loaded config; defaults are inserted in place (and it is returned).
        schema: the schema mapping, or the path of the main schema file (see :func:`load_schema`).

    Raises:
        ConfigError: with the dotted path of the first offending key.
    """
    if not isinstance(schema, Mapping):
        schema = load_schema(schema)
    _fill_defaults(config, schema)
    _default_inference_summaries(config)
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), key_path(e.absolute_path)))
    if errors:
        raise ConfigError("invalid config: " + "; ".join(_describe(e) for e in errors[:5]))
    check_semantics(config)
    return config


def prepend_to_pythonpath(path: str) -> None:
    """Put ``path`` first on PYTHONPATH for the jobs the workflow starts.

    Rule scripts run in their own interpreter (and software environment); this lets them
    import the checkout's package without installing it into every environment.
    """
    current = os.environ.get("PYTHONPATH", "")
    parts = [p for p in current.split(os.pathsep) if p and p != path]
    os.environ["PYTHONPATH"] = os.pathsep.join([path, *parts])


def canonical(value: Any) -> Any:
    """A copy of ``value`` with every mapping's keys sorted, recursively.

    Snakemake reruns a job when the repr of its params changes; the key order of a YAML
    mapping is not meaningful, so params derived from config pass through this first.
    """
    if isinstance(value, Mapping):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value
