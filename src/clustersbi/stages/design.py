"""The design stage: the design table for inspection and the resolved configuration.

Contract (rules of ``design.smk``):
- ``design_table``: config sections ``seed``, ``design``, ``priors`` in;
  ``results/design/parameters.csv`` out: one row per mock (index, simulation, inner, chunk,
  split, seed, every parameter). No rule depends on it: chunks get their parameters at DAG
  time (:func:`clustersbi.design.chunk_design`).
- ``resolved_config``: the validated config in; ``results/config/resolved.yaml`` out (defaults
  filled in, with the package version).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..config import canonical
from ..design import DesignSpec, design_table
from ..io import atomic_path

__all__ = ["write_design_table", "write_resolved_config"]

logger = logging.getLogger(__name__)


def write_design_table(config: Mapping[str, Any], path: str | Path) -> None:
    """The design table of config sections ``seed``, ``design``, ``priors`` as CSV, atomically."""
    table = design_table(DesignSpec.from_config(config))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.8g")
    logger.info("%d mocks, splits: %s", len(table), table["split"].value_counts().to_dict())


def write_resolved_config(config: Mapping[str, Any], path: str | Path) -> None:
    """Write the validated config (defaults filled in) as YAML, atomically, with the version."""
    from .. import __version__

    header = f"# configuration as run (defaults filled in), clustersbi {__version__}\n"
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(canonical(dict(config)), sort_keys=True))
