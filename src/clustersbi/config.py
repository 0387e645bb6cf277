"""Configuration: schema validation with messages that name the offending key.

The workflow validates its config with :func:`validate_config` before any job runs. The
JSON schema (``workflow/schemas/config.schema.yaml``) fixes the structure (no unknown keys,
types, ranges, defaults); :func:`check_semantics` adds the checks a schema cannot express
(prior bounds in order, split fractions summing to one).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

__all__ = ["load_schema", "canonical", "prepend_to_pythonpath", "ConfigError", "load_yaml", "validate_config", "check_semantics", "key_path"]


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


def _describe(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        names = ", ".join(key_path(path + [u]) for u in unknown)
        return f"unknown key {names} (allowed here: {', '.join(allowed)})"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing key {key_path(path + [missing])}"
    return f"{key_path(path)}: {error.message}"


def check_semantics(config: Mapping[str, Any]) -> None:
    """Checks beyond the schema's reach; raises :class:`ConfigError` naming the key."""
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
    if design.get("nested") and not config.get("priors", {}).get("astrophysics"):
        raise ConfigError("design.nested: a nested design needs priors.astrophysics")
    if not design.get("nested", True) and design.get("n_inner", 1) != 1:
        raise ConfigError("design.n_inner: must be 1 unless design.nested is true")


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
DEFAULT_INFERENCE_SUMMARIES = {"scaling": ["abundance+power_spectrum"], "ldl": ["xod"]}


def _default_inference_summaries(config: dict[str, Any]) -> None:
    inference = config.get("inference")
    if isinstance(inference, dict) and inference.get("summaries") is None:
        inference["summaries"] = list(DEFAULT_INFERENCE_SUMMARIES[config.get("analysis", "scaling")])


def _check_inference_summaries(config: Mapping[str, Any]) -> None:
    """Every inferred training set must be one the configured analysis produces."""
    analysis = config.get("analysis", "scaling")
    produced = set(config.get("summaries", {}).get("kinds", [])) if analysis == "scaling" else {"xod"}
    for i, name in enumerate(config.get("inference", {}).get("summaries", [])):
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
    validator = jsonschema.Draft7Validator(schema)
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
