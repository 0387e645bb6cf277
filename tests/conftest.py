"""Shared fixtures: seeded backends, repository paths, the external test data, the real Pinocchio."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
#: Real outputs of external codes that cannot run here, kept beside the repository.
SHARED_TESTDATA = REPO.parent / "shared" / "testdata"

# Keep tests from fighting over the two CI cores and from using a GPU by accident.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)  # only guards against accidental global-RNG use; code takes explicit seeds
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def pinocchio_executable() -> Path:
    """The real Pinocchio V5.1, built once by ``make pinocchio`` from ``../shared/vendor``
    (tests/pinocchio_build.py); skips with the reason when it cannot be built here."""
    from pinocchio_build import build

    result = build()
    if result.executable is None:
        pytest.skip(result.skip_reason)
    return result.executable


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The shared external test data; tests that need it skip when it is absent."""
    if not SHARED_TESTDATA.is_dir():
        pytest.skip(f"external test data not found beside the repository ({SHARED_TESTDATA.name})")
    return SHARED_TESTDATA
