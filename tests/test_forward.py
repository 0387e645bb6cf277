"""The fused slab forward model (clustersbi.forward) against the staged chain it replaces.

References, all existing functions of the workflow: clustersbi.xray.paint_slab (numpy, float64,
scipy.sparse overlap products) for the projection, and the staged chain of the rules
simulate_lightcone -> paint_gas -> xray_maps (clustersbi.lightcone.simulate_lightcone_slabs,
i.e. run_pm; the LDL painter of clustersbi.stages.ldl; clustersbi.stages.xray.paint_gas_lightcone)
for the fused program.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from clustersbi import forward
from clustersbi.cosmology import Cosmology, redshift_at_comoving_distance
from clustersbi.lightcone import Slab, simulate_lightcone_slabs, slab_attributes
from clustersbi.stages.ldl import LDLPainter
from clustersbi.stages.xray import paint_gas_lightcone
from clustersbi.xray import EmissionTable, make_sky_grid, paint_slab
from ldl_toys import power_law_spectrum, write_ldl_models

# ---- tolerances (float32 against float64 references)
#: projection of given n_e, T grids: max |fused - numpy| per pixel over the map's maximum
#: (float32 overlaps and rates against float64: measured 2.4e-6), and the summed map
PROJECTION_MAX_RTOL = 2e-5
PROJECTION_SUM_RTOL = 5e-6
#: the whole fused slab against the staged chain (float32 PM in both, float64 painting in the
#: staged chain): the summed map, and per pixel relative to the pixel plus 1e-6 of the maximum.
#: Measured on the 16 x 16 x 8 slabs below: 1e-7-5e-7 summed, 3.4e-6 worst pixel (2-core CPU);
#: the bounds leave room for another CPU's float32 rounding in the 3 PM steps.
CHAIN_SUM_RTOL = 1e-5
CHAIN_PIXEL_RTOL = 1e-4
CHAIN_PIXEL_FLOOR = 1e-6

BANDS = np.array([[0.5, 1.0], [1.0, 2.0]])
COSMO = Cosmology(Omega_m=0.3, sigma_8=0.8)


def _synthetic_table(seed: int = 1) -> EmissionTable:
    """A smooth, positive r_b(T, z) with a random ripple (any table tests the interpolation)."""
    rng = np.random.default_rng(seed)
    kt, z = np.geomspace(0.08, 64.0, 20), np.arange(0.0, 1.01, 0.1)
    log_rate = (-30.0 + 0.3 * np.log(kt)[None, :, None] - 0.5 * z[None, None, :] + np.array([0.0, 0.4])[:, None, None]
                + 0.1 * rng.normal(size=(2, kt.size, z.size)))
    return EmissionTable(kt, z, BANDS, np.exp(log_rate))


@pytest.fixture(scope="module")
def table() -> EmissionTable:
    return _synthetic_table()


def _gas(shape, seed: int = 2):
    """Log-normal n_e [cm^-3] and T [K] grids; T reaches below and above the table's range."""
    rng = np.random.default_rng(seed)
    ne = np.exp(rng.normal(np.log(1e-4), 1.0, size=shape)).astype(np.float32)
    t = np.exp(rng.normal(np.log(2e7), 1.5, size=shape)).astype(np.float32)
    return ne, t


@pytest.mark.parametrize("fov_deg2, n_keep", [(0.25, 6), (4.0, 8)], ids=["narrow-partial-depth", "wider-than-box"])
def test_projection_matches_paint_slab(table, fov_deg2, n_keep):
    """n_x != n_y (a transposition shows), a box deeper than the painted layers, and a field
    wider than the box (periodic images)."""
    shape, chi_lo, width, cell = (12, 10, 8), 800.0, 12.0, 1.0
    ne, t = _gas(shape)
    grid = make_sky_grid(fov_deg2, 2.0)
    chi_hi = chi_lo + n_keep * cell
    ref = paint_slab(ne[:, :, :n_keep].astype(float), t[:, :, :n_keep].astype(float), chi_lo, chi_hi, width, table, grid,
                     COSMO.Omega_m, COSMO.h, los_axis=2)
    n_images = forward.periodic_images(width, np.tan(np.abs(grid.edges_rad).max()) * chi_hi)
    layers = forward.slab_layers(chi_lo, chi_hi, width, shape, COSMO.Omega_m, COSMO.h, grid, n_keep)
    project = jax.jit(forward.project_slab, static_argnames="n_images")
    rate, zsum, total = (np.asarray(a, np.float64) for a in project(ne, t, layers, forward.emission_arrays(table), n_images))
    for name, got, want in [("rate", rate, ref.rate_cts_s), ("z_rate_sum", zsum, ref.z_rate_sum),
                            ("total", total, ref.total_cells_cts_s)]:
        assert got.shape == want.shape, (name, got.shape, want.shape)
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < PROJECTION_MAX_RTOL, f"{name}: max error {err:.2e} of the maximum"
        assert abs(got.sum() / want.sum() - 1) < PROJECTION_SUM_RTOL, f"{name}: sum {got.sum()} vs {want.sum()}"


def test_band_rates_match_the_table_outside_its_range(table):
    """Below kT_min: 0; above kT_max: the last value; z on and between nodes."""
    kt = np.array([0.01, 0.08, 0.5, 3.3, 64.0, 500.0])
    z = np.array([0.0, 0.15, 0.3, 0.55, 1.0, 0.999])
    got = np.asarray(forward.band_rates(forward.emission_arrays(table), kt, z), np.float64)
    want = table(kt, z)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=0.0)
    assert np.all(got[:, 0] == 0.0)


# ----------------------------------------------------------------------------- the fused slab


SHAPE, CELL, N_STEPS, A_INIT = (16, 16, 8), 1.0, 3, 0.1
PARAMS = {"Omega_m": 0.3, "sigma_8": 0.8, "A_AGN1": 2.0}


def _slab(chi_lo: float, depth: float, omega_m: float) -> Slab:
    """A slab shallower than its 8-cell box (7 layers painted) at ~z = 0.29."""
    chi_hi = chi_lo + depth
    z_lo, z_hi, z_c = redshift_at_comoving_distance(np.array([chi_lo, chi_hi, chi_lo + 0.5 * depth]), omega_m)
    return Slab(0, chi_lo, chi_hi, float(z_lo), float(z_hi), float(z_c), depth, SHAPE[0] * CELL)


@pytest.fixture(scope="module")
def painter(tmp_path_factory) -> LDLPainter:
    """A small trained-looking model pair written as the ldl stage writes it."""
    return write_ldl_models(tmp_path_factory.mktemp("ldl_models"), CELL)


class _SlabGroup(dict):
    """The slab group of a gas file as ``paint_gas_lightcone`` reads it (datasets + attrs)."""

    def __init__(self, ne, t, attrs):
        super().__init__(ne_cm3=ne, t_k=t)
        self.attrs, self.name = attrs, "/sim_000000/lc_00/slab_00"


def _staged_maps(cosmo, slab, seed, painter, table, grid):
    """The rules' chain: run_pm of the slab, the painter, the xray stage's painting."""
    k, pk = power_law_spectrum()
    (run,) = simulate_lightcone_slabs(cosmo, k, pk, [slab], cell_mpc_h=CELL, seeds=[seed], a_init=A_INIT,
                                      n_steps=N_STEPS, mesh_shape=SHAPE)
    params = {**PARAMS, "Omega_m": cosmo.Omega_m}
    ne, t = painter.paint(run.snapshots[-1].positions_mpc_h, run.mesh_shape, run.box_mpc_h, params, slab.z_centre)
    group = _SlabGroup(ne, t, slab_attributes(slab, run.mesh_shape, run.box_mpc_h, CELL))
    (maps,) = paint_gas_lightcone([group], table, grid, cosmo.Omega_m, cosmo.h)
    return maps


def _fused_maps(cosmo, slab, seed, painter, table, grid):
    k, pk = power_law_spectrum()
    params = {**PARAMS, "Omega_m": cosmo.Omega_m}
    return forward.slab_maps(cosmo, k, pk, slab, mesh_shape=SHAPE, cell_mpc_h=CELL, seed=seed,
                             ne_params=painter.params_ne(params), t_params=painter.params_t(params, slab.z_centre),
                             t_floor_k=painter.t_floor_k, table=table, grid=grid, a_init=A_INIT, n_steps=N_STEPS)


def test_fused_slab_equals_the_staged_chain(painter, table):
    """One slab, 16 x 16 x 8 particles, 3 steps, a field wider than the box (periodic images)."""
    slab, grid = _slab(800.0, 6.6, COSMO.Omega_m), make_sky_grid(1.44, 3.0)
    staged = _staged_maps(COSMO, slab, 11, painter, table, grid)
    fused = _fused_maps(COSMO, slab, 11, painter, table, grid)
    assert fused.rate_cts_s.shape == staged.rate_cts_s.shape == (2, grid.n_pix, grid.n_pix)
    assert staged.rate_cts_s.sum() > 0
    np.testing.assert_allclose([fused.z_lo, fused.z_hi], [staged.z_lo, staged.z_hi], rtol=1e-12)
    for name in ("rate_cts_s", "z_rate_sum", "total_cells_cts_s"):
        got, want = getattr(fused, name), getattr(staged, name)
        total_err = abs(got.sum() / want.sum() - 1)
        assert total_err < CHAIN_SUM_RTOL, f"{name}: summed {got.sum()} vs staged {want.sum()} ({total_err:.2e})"
        pixel_err = np.max(np.abs(got - want) / (np.abs(want) + CHAIN_PIXEL_FLOOR * np.abs(want).max()))
        assert pixel_err < CHAIN_PIXEL_RTOL, f"{name}: worst pixel off by {pixel_err:.2e}"


def test_one_compilation_serves_slabs_of_other_cosmologies(painter, table):
    """Another Omega_m, redshift, seed and painted depth reuse the program (no retrace), and its
    maps still equal the staged chain's."""
    grid = make_sky_grid(1.44, 3.0)
    settings = forward.SlabProgram(SHAPE, CELL, 2)
    cosmo_b = Cosmology(Omega_m=0.25, sigma_8=0.9)
    _fused_maps(COSMO, _slab(800.0, 6.6, COSMO.Omega_m), 11, painter, table, grid)
    program = forward.slab_program(settings)
    compiled = program._cache_size()
    slab_b = _slab(900.0, 5.2, cosmo_b.Omega_m)
    fused = _fused_maps(cosmo_b, slab_b, 12, painter, table, grid)
    assert program._cache_size() == compiled == 1
    staged = _staged_maps(cosmo_b, slab_b, 12, painter, table, grid)
    err = abs(fused.rate_cts_s.sum() / staged.rate_cts_s.sum() - 1)
    assert err < CHAIN_SUM_RTOL, err


def test_too_few_periodic_images_raise(painter, table):
    """The field (1.2 deg at chi ~ 807 Mpc/h) is wider than the 16 Mpc/h box: 2 images needed."""
    slab, grid = _slab(800.0, 6.6, COSMO.Omega_m), make_sky_grid(1.44, 3.0)
    k, pk = power_law_spectrum()
    with pytest.raises(ValueError, match="needs 2 periodic images"):
        forward.slab_maps(COSMO, k, pk, slab, mesh_shape=SHAPE, cell_mpc_h=CELL, seed=11,
                          ne_params=painter.params_ne(PARAMS), t_params=painter.params_t(PARAMS, slab.z_centre),
                          t_floor_k=painter.t_floor_k, table=table, grid=grid, n_images=1)


def test_non_finite_field_raises(painter, table):
    slab, grid = _slab(800.0, 6.6, COSMO.Omega_m), make_sky_grid(1.44, 3.0)
    k, pk = power_law_spectrum()
    bad = forward.slab_linear_field(k, pk, SHAPE, tuple(n * CELL for n in SHAPE), 11).at[0, 0, 0].set(np.nan)
    with pytest.raises(forward.pm.NonFiniteSimulationError, match="slab 0"):
        forward.slab_maps(COSMO, k, pk, slab, mesh_shape=SHAPE, cell_mpc_h=CELL, seed=11,
                          ne_params=painter.params_ne(PARAMS), t_params=painter.params_t(PARAMS, slab.z_centre),
                          t_floor_k=painter.t_floor_k, table=table, grid=grid, a_init=A_INIT, n_steps=N_STEPS,
                          delta_lin=bad)
