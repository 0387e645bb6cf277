"""Tests of the FFT power-spectrum estimator.

References: the Poisson shot noise 1/n, Gaussian random fields with an injected P(k), the
analytic power spectrum of a Thomas (Neyman-Scott) point process, the invariance of a
window-compensated estimate under a change of mesh, and Pylians' ``Pk_library`` (in the
``compare`` extra that ``make test`` installs).
"""

from __future__ import annotations

import numpy as np
import Pk_library as pkl
import pytest

from clustersbi import fields, power

#: Band-averaged P(k) of a Poisson catalogue vs 1/n (the brief's tolerance; the statistical error
#: of the band average here is ~0.5%).
SHOT_NOISE_RTOL = 0.02
#: Per-bin deviations allowed, in units of the Gaussian standard error sqrt(2/n_modes) P.
N_SIGMA = 5.0
#: Window-compensated PCS + interlaced P(k) of one point set on 32^3 vs 64^3 meshes, below the
#: 32^3 Nyquist frequency (measured: 1e-4; without compensation the difference is ~20x at k_N).
GRID_RTOL = 5e-3
#: Agreement with Pylians on the same mesh (Pylians FFTs in single precision; measured ~1e-7).
PYLIANS_RTOL = 1e-3
#: float32 catalogue P(k) (compiled assignment summed in float32) vs the float64 numpy path
FLOAT32_PATH_RTOL = 1e-5

BOX = 500.0


def _z_scores(ps: power.PowerSpectrum, expected: np.ndarray) -> np.ndarray:
    return (ps.pk_mpc_h3 / expected - 1.0) * np.sqrt(ps.n_modes / 2.0)


def test_linear_edges_paper_setup():
    edges = power.linear_k_edges(1500.0, 64, dk_in_kf=0.33)
    kf = 2 * np.pi / 1500.0
    assert edges[0] == pytest.approx(kf)
    assert edges[-1] <= np.pi * 64 / 1500.0
    np.testing.assert_allclose(np.diff(edges), 0.33 * kf, rtol=1e-9)
    assert len(edges) - 1 == 93
    with pytest.raises(ValueError, match="dk_in_kf"):
        power.linear_k_edges(1500.0, 64, dk_in_kf=0.0)


@pytest.fixture(scope="module")
def poisson_catalogue():
    rng = np.random.default_rng(42)
    return rng.uniform(0.0, BOX, (100_000, 3))


def test_poisson_shot_noise(poisson_catalogue):
    ps = power.power_spectrum(poisson_catalogue, BOX, 32)
    shot = BOX**3 / len(poisson_catalogue)
    assert ps.shot_noise_mpc_h3 == pytest.approx(shot, rel=1e-12)
    band = np.sum(ps.pk_mpc_h3 * ps.n_modes) / ps.n_modes.sum()
    assert abs(band / shot - 1) < SHOT_NOISE_RTOL, f"band-averaged P/(1/n) = {band / shot:.4f}"
    z = _z_scores(ps, np.full_like(ps.pk_mpc_h3, shot))
    assert np.all(np.abs(z) < N_SIGMA), f"max |z| {np.abs(z).max():.2f} at k={ps.k_h_mpc[np.argmax(np.abs(z))]:.3f}"
    # the top quarter of the band: interlacing removes the aliased shot noise (~10% without)
    top = ps.k_h_mpc > 0.75 * power.nyquist_frequency(32, BOX)
    top_band = np.sum((ps.pk_mpc_h3 * ps.n_modes)[top]) / ps.n_modes[top].sum()
    assert abs(top_band / shot - 1) < SHOT_NOISE_RTOL, f"near-Nyquist P/(1/n) = {top_band / shot:.4f}"
    raw = power.power_spectrum(poisson_catalogue, BOX, 32, interlacing=False)
    raw_top = np.sum((raw.pk_mpc_h3 * raw.n_modes)[top]) / raw.n_modes[top].sum()
    assert raw_top / shot - 1 > 0.03, f"aliasing expected without interlacing, got {raw_top / shot:.4f}"


def test_weighted_shot_noise(poisson_catalogue):
    weights = np.random.default_rng(1).uniform(0.2, 3.0, len(poisson_catalogue))
    ps = power.power_spectrum(poisson_catalogue, BOX, 32, weights=weights)
    expected = BOX**3 * np.sum(weights**2) / np.sum(weights) ** 2
    assert ps.shot_noise_mpc_h3 == pytest.approx(expected, rel=1e-12)
    band = np.sum(ps.pk_mpc_h3 * ps.n_modes) / ps.n_modes.sum()
    assert abs(band / expected - 1) < SHOT_NOISE_RTOL, f"weighted band-averaged P/shot = {band / expected:.4f}"


def test_gaussian_field_recovered():
    def pk_in(k):
        return 2.0e4 * (k / 0.05) ** -1.2 * np.exp(-((k / 0.4) ** 2))

    n_mesh = 48
    delta = power.gaussian_random_field(n_mesh, BOX, pk_in, rng=9)
    ps = power.power_spectrum_from_mesh(delta, BOX, dk_in_kf=1.0)
    expected = power.spherical_average(pk_in, n_mesh, BOX, ps.k_edges_h_mpc)
    z = _z_scores(ps, expected)
    assert np.all(np.abs(z) < N_SIGMA), f"max |z| {np.abs(z).max():.2f}"
    chi2 = float(np.sum(z**2))
    dof = z.size
    assert abs(chi2 / dof - 1) < N_SIGMA * np.sqrt(2.0 / dof), f"chi2/dof = {chi2 / dof:.3f} for {dof} bins"


@pytest.fixture(scope="module")
def thomas_process():
    """Thomas process: parents uniform, m children each displaced by N(0, r^2) per axis."""
    rng = np.random.default_rng(5)
    n_parents, m, r = 20_000, 4, 4.0
    parents = rng.uniform(0, BOX, (n_parents, 3))
    pos = np.mod(np.repeat(parents, m, axis=0) + rng.normal(0, r, (n_parents * m, 3)), BOX)
    nbar = n_parents * m / BOX**3

    def pk_model(k):  # P(k) = [1 + (m - 1) exp(-k^2 r^2)] / nbar
        return (1.0 + (m - 1) * np.exp(-((k * r) ** 2))) / nbar

    return pos, pk_model


def test_thomas_process_analytic_and_grid_consistency(thomas_process):
    pos, pk_model = thomas_process
    coarse = power.power_spectrum(pos, BOX, 32, dk_in_kf=1.0)
    fine = power.power_spectrum(pos, BOX, 64, dk_in_kf=1.0)
    for ps, n_mesh in ((coarse, 32), (fine, 64)):
        expected = power.spherical_average(pk_model, n_mesh, BOX, ps.k_edges_h_mpc)
        z = _z_scores(ps, expected)
        assert np.all(np.abs(z) < N_SIGMA), f"{n_mesh}^3: max |z| {np.abs(z).max():.2f}"
    nb = coarse.pk_mpc_h3.size
    np.testing.assert_allclose(fine.k_edges_h_mpc[: nb + 1], coarse.k_edges_h_mpc, rtol=1e-12)
    ratio = fine.pk_mpc_h3[:nb] / coarse.pk_mpc_h3
    assert np.all(np.abs(ratio - 1) < GRID_RTOL), f"P_64/P_32 max deviation {np.abs(ratio - 1).max():.2e}"


@pytest.mark.parametrize("scheme", ["cic", "pcs"])
def test_agrees_with_pylians(thomas_process, scheme):
    pos, _ = thomas_process
    n_mesh = 32
    delta = fields.overdensity_field(pos, n_mesh, BOX, scheme).astype(np.float32)
    theirs = pkl.Pk(delta, BOX, 0, scheme.upper(), 1, False)
    kf = power.fundamental_frequency(BOX)
    # Pylians bins: [i, i+1) k_f, i >= 1; those below the Nyquist frequency
    ours = power.power_spectrum_from_mesh(
        delta, BOX, window_order=scheme, k_edges_h_mpc=kf * np.arange(1, n_mesh // 2 + 1), workers=1
    )
    nb = ours.pk_mpc_h3.size
    rel_pk = np.abs(ours.pk_mpc_h3 / theirs.Pk[:nb, 0] - 1).max()
    rel_k = np.abs(ours.k_h_mpc / theirs.k3D[:nb] - 1).max()
    assert rel_pk < PYLIANS_RTOL, f"max |P_ours/P_Pylians - 1| = {rel_pk:.2e}"
    assert rel_k < PYLIANS_RTOL, f"max |k_ours/k_Pylians - 1| = {rel_k:.2e}"
    # Pylians counts independent modes (half of k-space); we count k and -k
    np.testing.assert_array_equal(ours.n_modes, 2 * theirs.Nmodes3D[:nb].astype(np.int64))


@pytest.mark.parametrize("scheme", ["cic", "pcs"])
def test_catalogue_power_agrees_with_pylians(thomas_process, scheme):
    """The whole catalogue path (compiled assignment, float32): ours vs MAS_library.MA + Pk_library.Pk."""
    masl = pytest.importorskip("MAS_library")
    pos, _ = thomas_process
    n_mesh = 32
    counts = np.zeros((n_mesh,) * 3, np.float32)
    masl.MA(pos.astype(np.float32), counts, BOX, scheme.upper(), verbose=False)
    delta = (counts / counts.mean(dtype=np.float64) - 1.0).astype(np.float32)
    theirs = pkl.Pk(delta, BOX, 0, scheme.upper(), 1, False)
    kf = power.fundamental_frequency(BOX)
    ours = power.power_spectrum(pos, BOX, n_mesh, scheme=scheme, interlacing=False,
                                k_edges_h_mpc=kf * np.arange(1, n_mesh // 2 + 1), workers=1)
    nb = ours.pk_mpc_h3.size
    rel_pk = np.abs(ours.pk_mpc_h3 / theirs.Pk[:nb, 0] - 1).max()
    assert rel_pk < PYLIANS_RTOL, f"max |P_ours/P_Pylians - 1| = {rel_pk:.2e}"
    # and the float64 path (numpy assignment) agrees with the float32 one
    ours64 = power.power_spectrum(pos, BOX, n_mesh, scheme=scheme, interlacing=False, fft_dtype=np.float64,
                                  k_edges_h_mpc=kf * np.arange(1, n_mesh // 2 + 1), workers=1)
    np.testing.assert_allclose(ours.pk_mpc_h3, ours64.pk_mpc_h3, rtol=FLOAT32_PATH_RTOL)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="delta"):
        power.power_spectrum_from_mesh(np.zeros((4, 4, 5)), BOX)
    with pytest.raises(ValueError, match="positions_mpc_h"):
        power.power_spectrum(np.zeros((0, 3)), BOX, 16)
    with pytest.raises(ValueError, match="k_edges_h_mpc"):
        power.power_spectrum_from_mesh(np.zeros((4, 4, 4)), BOX, k_edges_h_mpc=np.array([0.2, 0.1]))
