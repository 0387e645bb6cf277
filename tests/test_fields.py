"""Tests of mass assignment (clustersbi.mesh, convention "node" as the catalogue fields use) and
cluster overdensity fields (clustersbi.fields).

References: exact properties of B-spline kernels (partition of unity, reproduction of linear
functions), weight conservation, and Pylians' ``MAS_library.MA`` (an independent C
implementation of the same kernels, mesh point i at i H; Pylians is in the ``compare`` extra
that ``make test`` installs).
"""

from __future__ import annotations

import MAS_library as masl
import numpy as np
import pytest

from clustersbi import fields, mesh

#: The cell convention of the catalogue fields and the P(k) estimator (mesh point i at i H).
CONVENTION = "node"

#: Relative tolerance for exact identities in double precision.
EXACT_RTOL = 1e-10
#: Absolute tolerance of a mesh cell vs Pylians, which assigns in single precision
#: (cells hold O(10) counts here, float32 eps ~ 1.2e-7 times a few hundred additions).
PYLIANS_ATOL = 2e-5

BOX = 100.0
N_MESH = 16
SCHEMES = ["ngp", "cic", "tsc", "pcs"]


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(11)
    pos = rng.uniform(0.0, BOX, (3000, 3))
    weights = rng.uniform(0.5, 2.0, 3000)
    return pos, weights


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kernel_partition_of_unity_and_first_moment(order):
    x = np.random.default_rng(order).uniform(-5, 5, 1000)
    first, w = mesh.kernel_weights(x, order)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=EXACT_RTOL)
    assert np.all(w >= 0)
    if order >= 2:  # B-splines of order >= 2 reproduce linear functions: sum_j w_j x_j = x
        nodes = first[:, None] + np.arange(order)[None, :]
        np.testing.assert_allclose((w * nodes).sum(axis=1), x, rtol=0, atol=1e-9)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_assignment_conserves_weight(points, scheme):
    pos, weights = points
    grid = mesh.assign_to_mesh(pos, N_MESH, BOX, scheme, weights=weights, chunk_size=700, convention=CONVENTION)
    assert grid.shape == (N_MESH,) * 3
    assert grid.sum() == pytest.approx(weights.sum(), rel=EXACT_RTOL), f"sum {grid.sum()} vs {weights.sum()}"
    unweighted = mesh.assign_to_mesh(pos, N_MESH, BOX, scheme, convention=CONVENTION)
    assert unweighted.sum() == pytest.approx(len(pos), rel=EXACT_RTOL)


def test_periodic_wrapping_and_chunking(points):
    pos, weights = points
    ref = mesh.assign_to_mesh(pos, N_MESH, BOX, "pcs", weights=weights, convention=CONVENTION)
    shifted = mesh.assign_to_mesh(pos + BOX * np.array([1.0, -2.0, 3.0]), N_MESH, BOX, "pcs", weights=weights,
                                  chunk_size=128, convention=CONVENTION)
    np.testing.assert_allclose(shifted, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_assignment_matches_pylians(points, scheme):
    pos, weights = points
    theirs = np.zeros((N_MESH,) * 3, dtype=np.float32)
    masl.MA(pos.astype(np.float32), theirs, BOX, scheme.upper(), W=weights.astype(np.float32), verbose=False)
    ours = mesh.assign_to_mesh(pos, N_MESH, BOX, scheme, weights=weights, convention=CONVENTION)
    diff = np.abs(ours - theirs).max()
    assert diff < PYLIANS_ATOL, f"max |ours - Pylians| = {diff:.3e} for {scheme}"


def test_overdensity_field_puts_a_point_at_its_node():
    """The catalogue fields use convention "node": a point at (i, j, k) H is wholly in cell (i, j, k)
    for CIC (and spreads symmetrically over the neighbours for the odd-order TSC)."""
    cell = BOX / N_MESH
    node = np.array([3, 0, N_MESH - 1])
    pos = (node * cell)[None, :]
    cic = fields.overdensity_field(pos, N_MESH, BOX, "cic") + 1.0
    assert cic[tuple(node)] == pytest.approx(N_MESH**3, rel=EXACT_RTOL), np.argwhere(cic > 0).tolist()
    tsc = fields.overdensity_field(pos, N_MESH, BOX, "tsc") + 1.0
    assert tsc[tuple(node)] == pytest.approx(0.75**3 * N_MESH**3, rel=EXACT_RTOL)


def test_overdensity_mean_zero_and_empty_raises(points):
    pos, _ = points
    delta = fields.overdensity_field(pos, N_MESH, BOX)
    assert abs(delta.mean()) < 1e-12, f"mean delta {delta.mean()}"
    assert delta.min() >= -1.0
    with pytest.raises(ValueError, match="empty"):
        fields.overdensity(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="positions_mpc_h"):
        mesh.assign_to_mesh(np.zeros((5, 2)), 8, BOX, convention=CONVENTION)
    with pytest.raises(ValueError, match="assignment"):
        mesh.assign_to_mesh(pos, 8, BOX, "sph", convention=CONVENTION)


def test_overdensity_variants(points):
    pos, _ = points
    rng = np.random.default_rng(3)
    lum = 3e43 * 10.0 ** rng.exponential(0.3, len(pos))
    cuts = (3e43, 1.08e44)
    stack, names = fields.overdensity_variants(pos, lum, N_MESH, BOX, luminosity_cuts_erg_s=cuts, dtype=np.float64)
    assert names == ["number", "luminosity_weighted", "cut_3e+43", "cut_1.08e+44"]
    assert stack.shape == (4, N_MESH, N_MESH, N_MESH)
    # number channel == the all-objects cut channel (every L >= 3e43)
    np.testing.assert_allclose(stack[0], stack[2], atol=1e-12)
    # luminosity-weighted channel == overdensity of the L-weighted density (the weight normalisation drops out)
    ref = fields.overdensity(mesh.assign_to_mesh(pos, N_MESH, BOX, "pcs", weights=lum, convention=CONVENTION))
    np.testing.assert_allclose(stack[1], ref, atol=1e-10)
    # high cut channel from the explicit subset
    keep = lum >= cuts[1]
    np.testing.assert_allclose(stack[3], fields.overdensity_field(pos[keep], N_MESH, BOX), atol=1e-12)
    empty, _ = fields.overdensity_variants(pos, lum, N_MESH, BOX, variants=["luminosity_cuts"], luminosity_cuts_erg_s=(1e50,))
    assert not np.any(empty), "a cut above every cluster gives a zero channel"
    with pytest.raises(ValueError, match="variants"):
        fields.overdensity_variants(pos, lum, N_MESH, BOX, variants=["marked"])
