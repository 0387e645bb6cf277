"""Config fuzzing: random mutations of the default config give a clear error or a legal run.

Each mutation of ``config/config.yaml`` (with every schema default written out, so that every
key of every section can be hit) replaces a random leaf by a random value of a random kind
(huge, negative or zero numbers, floats for integers, NaN and infinities, strings, None, lists,
mappings, booleans, or a plausible value near the old one), deletes a key, or adds an unknown
key. Each must end in one of two ways:

* a :class:`~clustersbi.config.ConfigError` whose message starts with the dotted path of a key
  of the config (or of the missing key);
* a config that validates and gives a :class:`~clustersbi.design.DesignSpec`; a few of them are
  dry-run by Snakemake (the real workflow) to show that they build the DAG.

Never another exception type (a traceback), never a hang (each validation well under a second,
each dry run under a timeout). Validation runs in-process for all mutations; only
``N_DRY_RUNS`` legal ones start Snakemake, so the module takes ~20 s.

Outcome at ``FUZZ_SEED`` = 17, ``N_MUTATIONS`` = 60 (38 replacements, 13 unknown keys, 9
deletions): 45 ConfigErrors naming a key of the config (44 of them the mutated key itself, a
parent or a child; the other names the key it conflicts with: deleting ``analysis`` makes
``inference.summaries: [xod]`` one the default analysis does not produce), 15 legal configs, 3
of which are dry-run and build the DAG; 0 other exceptions, 0 hangs. The assertion messages
print the current counts. (Outside CI: 1000 mutations of each shipped config, several seeds,
gave 0 tracebacks and 0 unnamed keys, and 60 legal replacements all built the DAG.)
"""

from __future__ import annotations

import copy
import math
import random
import re
import subprocess
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from clustersbi.config import ConfigError, key_path, load_schema, load_yaml, validate_config
from clustersbi.design import DesignSpec, n_chunks

pytestmark = pytest.mark.slow

SCHEMA = "workflow/schemas/config.schema.yaml"
FUZZ_SEED = 17
N_MUTATIONS = 60
#: legal mutations dry-run by Snakemake (each ~4 s)
N_DRY_RUNS = 3
#: a dry run takes ~4 s; anything near this is a hang
DRY_RUN_TIMEOUT_S = 120
#: one in-process validation takes milliseconds; anything near this is a hang
VALIDATION_LIMIT_S = 2.0

#: the first key path of an error message (after the fixed prefixes of clustersbi.config)
_NAMED_KEY = re.compile(
    r"^(?:invalid config: )?(?P<kind>unknown key |missing key )?"
    r"(?P<path>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)"
)


@dataclass
class Mutation:
    kind: str  # replace | delete | add
    path: tuple  # keys and list positions from the top level
    value: Any = None

    def __str__(self) -> str:
        where = key_path(self.path)
        return f"{self.kind} {where}" + ("" if self.kind == "delete" else f" = {self.value!r}")


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path below ``node`` (mappings' keys and list positions), parents before children."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, sub in items:
        out.append(prefix + (key,))
        out += _paths(sub, prefix + (key,))
    return out


def _get(config: Any, path: tuple) -> Any:
    for part in path:
        config = config[part]
    return config


def _random_value(rng: random.Random, old: Any) -> Any:
    """A random value of a random kind; ``plausible`` stays near ``old`` and keeps its type."""
    kind = rng.choice(["huge", "negative", "zero", "float_for_int", "non_finite", "string", "none", "list",
                       "mapping", "bool", "plausible", "plausible"])
    if kind == "huge":
        return rng.choice([1e30, 10**30, -1e30, 2**64])
    if kind == "negative":
        return rng.choice([-1, -0.5, -1e6])
    if kind == "zero":
        return rng.choice([0, 0.0])
    if kind == "float_for_int":
        return float(old) + 0.5 if isinstance(old, (int, float)) and not isinstance(old, bool) else 2.5
    if kind == "non_finite":
        return rng.choice([math.nan, math.inf, -math.inf])
    if kind == "string":
        return rng.choice(["fuzz", "", "1e3", "null"])
    if kind == "none":
        return None
    if kind == "list":
        return rng.choice([[], [1, "a"], [[0.5, 1.0]]])
    if kind == "mapping":
        return {"fuzz": 1}
    if kind == "bool":
        return rng.choice([True, False])
    # plausible: the same type, near the old value
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return max(0, old + rng.choice([-1, 1, 2]))
    if isinstance(old, float):
        return old * rng.choice([0.5, 0.9, 1.1, 2.0])
    return copy.deepcopy(old)


def mutate(config: dict, rng: random.Random) -> tuple[dict, Mutation]:
    """A mutated copy of ``config`` and what was done."""
    out = copy.deepcopy(config)
    paths = _paths(out)
    kind = rng.choices(["replace", "delete", "add"], weights=[6, 2, 2])[0]
    if kind == "replace":
        leaves = [p for p in paths if not isinstance(_get(out, p), (dict, list)) or rng.random() < 0.1]
        path = rng.choice(leaves)
        value = _random_value(rng, _get(out, path))
        _get(out, path[:-1])[path[-1]] = value
        return out, Mutation("replace", path, value)
    mappings = [p for p in paths if isinstance(_get(out, p), dict)]
    if kind == "delete":
        path = rng.choice([p for p in paths if isinstance(p[-1], str)])
        del _get(out, path[:-1])[path[-1]]
        return out, Mutation("delete", path)
    parent = rng.choice([(), *mappings])
    path = parent + ("fuzz_unknown_key",)
    _get(out, parent)[path[-1]] = 1
    return out, Mutation("add", path, 1)


def _resolves(config: dict, message: str) -> tuple[bool, str]:
    """Whether the error message starts with a key path of ``config`` (or names a missing key)."""
    match = _NAMED_KEY.match(message)
    if not match:
        return False, ""
    path = match.group("path")
    if match.group("kind") == "missing key ":
        return True, path
    node: Any = config
    for part in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\[\d+\]", path):
        try:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        except (KeyError, IndexError, TypeError):
            return False, path
    return True, path


@pytest.fixture(scope="module")
def schema(repo):
    return load_schema(repo / SCHEMA)


@pytest.fixture(scope="module")
def default_config(repo, schema) -> dict:
    """config/config.yaml with every schema default written out."""
    return validate_config(load_yaml(repo / "config" / "config.yaml"), schema)


@pytest.fixture(scope="module")
def outcomes(default_config, schema):
    """Each mutation, validated in-process: (mutation, "error" | "legal", detail, config)."""
    rng = random.Random(FUZZ_SEED)
    results = []
    for _ in range(N_MUTATIONS):
        config, mutation = mutate(default_config, rng)
        started = time.perf_counter()
        try:
            validate_config(config, schema)
            DesignSpec.from_config(config)
        except ConfigError as err:
            results.append((mutation, "error", str(err), config))
        except Exception:  # noqa: BLE001 - the fuzz test reports whatever else escapes
            results.append((mutation, "traceback", traceback.format_exc(), config))
        else:
            results.append((mutation, "legal", "", config))
        elapsed = time.perf_counter() - started
        assert elapsed < VALIDATION_LIMIT_S, f"{mutation}: validation took {elapsed:.1f} s"
    return results


def _counts(outcomes) -> str:
    c = Counter(kind for _, kind, _, _ in outcomes)
    return f"{c['error']} errors, {c['legal']} legal, {c['traceback']} tracebacks of {len(outcomes)} mutations"


def test_mutations_give_a_config_error_or_a_legal_config(outcomes):
    tracebacks = [f"{m}:\n{detail}" for m, kind, detail, _ in outcomes if kind == "traceback"]
    assert not tracebacks, f"{_counts(outcomes)}; first:\n{tracebacks[0]}"
    counts = Counter(kind for _, kind, _, _ in outcomes)
    # the fuzzing is not degenerate: both outcomes occur
    assert counts["error"] >= N_MUTATIONS // 4 and counts["legal"] >= N_DRY_RUNS, _counts(outcomes)


def test_every_error_names_a_key(outcomes):
    unnamed, own = [], 0
    for mutation, kind, message, config in outcomes:
        if kind != "error":
            continue
        ok, path = _resolves(config, message)
        if not ok:
            unnamed.append(f"{mutation}: {message}")
        elif key_path(mutation.path).startswith(path) or path.startswith(key_path(mutation.path)):
            own += 1
    assert not unnamed, f"{len(unnamed)} messages name no key of the config ({_counts(outcomes)}):\n" + "\n".join(unnamed)
    errors = sum(kind == "error" for _, kind, _, _ in outcomes)
    # most errors name the mutated key itself (or its parent); the others a key it conflicts with
    assert own >= errors // 2, f"only {own} of {errors} errors name the mutated key or a parent"


def test_legal_mutations_build_the_dag(repo, outcomes, tmp_path):
    """``snakemake -n`` (the real workflow) on legal mutations spread over the sequence (small DAGs)."""
    legal = [(m, c) for m, kind, _, c in outcomes if kind == "legal" and n_chunks(DesignSpec.from_config(c)) <= 50]
    assert len(legal) >= N_DRY_RUNS, _counts(outcomes)
    for i, (mutation, config) in enumerate(legal[:: len(legal) // N_DRY_RUNS][:N_DRY_RUNS]):
        workdir = tmp_path / f"dry{i}"
        workdir.mkdir()
        configfile = workdir / "config.yaml"
        configfile.write_text(yaml.safe_dump(config))
        cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir),
               "--configfile", str(configfile), "--cores", "1", "-n", "-q"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DRY_RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{mutation}: snakemake -n hung (> {DRY_RUN_TIMEOUT_S} s)")
        assert proc.returncode == 0, f"{mutation}: validated but the DAG fails:\n{(proc.stdout + proc.stderr)[-3000:]}"
