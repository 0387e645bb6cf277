"""JaxPM runner: growth vs the analytic growth factor, lightcone geometry vs astropy, NaN errors."""

from __future__ import annotations

import astropy.cosmology as astropy_cosmology
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxpm.growth import growth_factor as jaxpm_growth
from jaxpm.pm import linear_field, lpt, pm_forces

from clustersbi import mesh
from clustersbi.cosmology import Cosmology, camb_power, growth_factor
from clustersbi.lightcone import lightcone_slab_geometry, simulate_lightcone_slabs
from clustersbi.pm import (
    NonFiniteSimulationError,
    density_power_spectrum,
    jax_cosmology,
    lpt_from_potentials,
    lpt_on_grid,
    lpt_potentials,
    pm_forces_compensated,
    pm_kick,
    power_interpolator,
    run_pm,
)
from clustersbi.stages.simulate import slab_seed

GROWTH_RTOL = 0.03  # linear growth of the lowest k bins, same-seed ratio (the target)
JAXPM_GROWTH_RTOL = 5e-4  # jaxpm growth ODE (float32 table) vs exact integral: measured 6e-7 at a=0.1, 1.2e-4 at a=0.5-0.8
DISTANCE_RTOL = 1e-6
COSMO = Cosmology()
# 32^3 particles in 1 Gpc/h: the lowest bins have k H <= 0.6 and k psi_rms << 1. In a
# 256 Mpc/h box the few lowest modes couple at second order (k psi ~ 0.2), scattering the
# same-seed ratio per k_f bin by 10-25% even for pure 2LPT: not a test of the integrator.
BOX_MPC_H = 1024.0
N_MESH = 32
SNAPSHOT_A = (0.5, 1.0)
A_INIT = 0.1


@pytest.fixture(scope="session")
def linear_power():
    k = np.geomspace(1e-4, 10.0, 400)
    return k, camb_power(COSMO, [0.0], k).pk_mpc3_h3[0]


@pytest.fixture(scope="session")
def pm_run(linear_power):
    k, pk = linear_power
    return run_pm(COSMO, k, pk, mesh_shape=N_MESH, box_mpc_h=BOX_MPC_H, seed=7, snapshot_a=SNAPSHOT_A,
                  a_init=A_INIT, n_steps=10)


def test_jaxpm_growth_matches_analytic():
    a = np.array([0.1, 0.3, 0.5, 0.8])
    got = np.asarray(jaxpm_growth(jax_cosmology(COSMO), jnp.asarray(a)))
    ref = growth_factor(a, COSMO.Omega_m)
    np.testing.assert_allclose(got, ref, rtol=JAXPM_GROWTH_RTOL, err_msg=f"jaxpm D {got} vs exact {ref}")


@pytest.mark.parametrize("snapshot", [0, 1])
def test_linear_growth_of_lowest_modes(pm_run, snapshot):
    snap = pm_run.snapshots[snapshot]
    kf = 2 * np.pi / BOX_MPC_H
    edges = kf * np.arange(0.5, 3.6, 1.0)  # bins centred on k_f, 2 k_f, 3 k_f
    p_init = density_power_spectrum(pm_run.initial.density, BOX_MPC_H, k_edges_h_mpc=edges).pk_mpc_h3
    p_final = density_power_spectrum(snap.density, BOX_MPC_H, k_edges_h_mpc=edges).pk_mpc_h3
    expected = (growth_factor(snap.a, COSMO.Omega_m) / growth_factor(A_INIT, COSMO.Omega_m)) ** 2
    ratio = p_final / p_init / expected
    assert np.all(np.abs(ratio - 1) < GROWTH_RTOL), f"a={snap.a}: P ratio / (D/D_init)^2 per bin = {ratio}"


def test_initial_density_matches_linear_field(pm_run):
    """The 2LPT particles at a_init paint the seed's Gaussian field times D(a_init)."""
    kf = 2 * np.pi / BOX_MPC_H
    edges = kf * np.arange(0.5, 3.6, 1.0)
    p_init = density_power_spectrum(pm_run.initial.density, BOX_MPC_H, k_edges_h_mpc=edges).pk_mpc_h3
    p_lin = density_power_spectrum(pm_run.linear_delta_z0 + 1.0, BOX_MPC_H, deconvolve_cic=False, k_edges_h_mpc=edges).pk_mpc_h3
    ratio = p_init / p_lin / growth_factor(A_INIT, COSMO.Omega_m) ** 2
    assert np.all(np.abs(ratio - 1) < GROWTH_RTOL), f"initial / linear per bin = {ratio}"


def test_outputs_are_physical(pm_run):
    snap = pm_run.snapshots[-1]
    n = N_MESH**3
    assert snap.positions_mpc_h.shape == (n, 3) and snap.velocities_km_s.shape == (n, 3)
    assert snap.positions_mpc_h.min() >= 0 and snap.positions_mpc_h.max() < BOX_MPC_H
    assert snap.density.sum() == pytest.approx(n, rel=1e-5), f"mass not conserved: {snap.density.sum()}"
    # 1D velocity dispersion in a 1 Gpc/h box at z = 0: linear theory ~ 300 km/s
    sigma_v = float(snap.velocities_km_s.std())
    assert 150 < sigma_v < 600, f"1D velocity dispersion {sigma_v} km/s"


def _paint_centre(pos, shape, box):
    """The PM's density painter: clustersbi.mesh.cic_paint, cell convention "centre"."""
    return np.asarray(mesh.cic_paint(pos, tuple(shape), box, convention="centre"))


def test_paint_cic_conserves_mass_and_places_centres():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 10.0, size=(1000, 3))
    painted = _paint_centre(pos, (5, 4, 3), (10.0, 8.0, 6.0))
    assert painted.sum() == pytest.approx(1000, rel=1e-5)
    one = _paint_centre(np.array([[3.0, 1.0, 1.0]]), (5, 5, 5), 10.0)  # centre of cell (1, 0, 0)
    assert one[1, 0, 0] == pytest.approx(1.0), f"cell-centre particle spread: {one[one > 0]}"


def test_snapshot_density_is_the_centre_painting_of_its_particles(pm_run):
    """The run's density meshes are mesh.cic_paint(positions, convention="centre") of its own particles."""
    for snap in (pm_run.initial, pm_run.snapshots[-1]):
        ref = _paint_centre(snap.positions_mpc_h, (N_MESH,) * 3, BOX_MPC_H)
        np.testing.assert_allclose(snap.density, ref * (1.0 * N_MESH**3 / len(snap.positions_mpc_h)),
                                   rtol=1e-5, atol=1e-5 * float(ref.max()), err_msg=f"a={snap.a}")


def test_nan_power_raises_with_seed(linear_power):
    k, pk = linear_power
    bad = pk.copy()
    bad[:] = np.nan
    with pytest.raises(NonFiniteSimulationError, match="seed=123"):
        run_pm(COSMO, k, bad, mesh_shape=8, box_mpc_h=64.0, seed=123, n_steps=2)


def test_slab_geometry_matches_astropy():
    z_min, z_max, n_slabs, fov = 0.1, 0.5, 12, 20.0
    for omega_m in (0.1, 0.3, 0.5):
        ref = astropy_cosmology.FlatLambdaCDM(H0=100.0, Om0=omega_m, Tcmb0=0)
        slabs = lightcone_slab_geometry(z_min, z_max, n_slabs, fov, omega_m)
        assert len(slabs) == n_slabs
        for s in slabs:
            for z, chi in ((s.z_lo, s.chi_lo), (s.z_hi, s.chi_hi)):
                ref_chi = ref.comoving_distance(z).value
                assert chi == pytest.approx(ref_chi, rel=DISTANCE_RTOL), f"Om={omega_m} z={z}: {chi} vs {ref_chi}"
            mid = ref.comoving_distance(s.z_centre).value
            assert mid == pytest.approx(0.5 * (s.chi_lo + s.chi_hi), rel=DISTANCE_RTOL)
        chi_max = ref.comoving_distance(z_max).value
        chi_min = ref.comoving_distance(z_min).value
        assert slabs[0].depth_mpc_h == pytest.approx((chi_max - chi_min) / n_slabs, rel=DISTANCE_RTOL)
        side = np.deg2rad(np.sqrt(fov))
        assert slabs[0].width_mpc_h == pytest.approx(2 * chi_max * np.tan(side / 2), rel=DISTANCE_RTOL)


def test_lightcone_slabs_run_independent_seeds(linear_power):
    k, pk = linear_power
    slabs = lightcone_slab_geometry(0.1, 0.2, 2, 4.0, COSMO.Omega_m)
    seeds = [slab_seed(5, 0, 0, s.index) for s in slabs]
    assert len(set(seeds)) == len(seeds), f"slab seeds collide: {seeds}"
    runs = simulate_lightcone_slabs(COSMO, k, pk, slabs, cell_mpc_h=8.0, seeds=seeds, n_steps=3, keep_particles=False,
                                    density=True)
    assert [r.seed for r in runs] == seeds
    for r, s in zip(runs, slabs):
        assert r.box_mpc_h[2] >= s.depth_mpc_h and r.box_mpc_h[0] >= s.width_mpc_h, (r.box_mpc_h, s)
        assert r.snapshots[0].a == pytest.approx(1 / (1 + s.z_centre))
        assert np.isfinite(r.snapshots[0].density).all()



def test_lightcone_slab_makes_no_unused_snapshot_and_the_same_particles(linear_power):
    """A slab run skips the a_init snapshot and the final density (nothing reads them) and
    returns the particles of the full run_pm of its box bit for bit."""
    k, pk = linear_power
    (slab,) = lightcone_slab_geometry(0.1, 0.2, 1, 4.0, COSMO.Omega_m)
    (lean,) = simulate_lightcone_slabs(COSMO, k, pk, [slab], cell_mpc_h=8.0, seeds=[11], n_steps=3)
    assert lean.initial is None and lean.snapshots[0].density is None
    full = run_pm(COSMO, k, pk, mesh_shape=lean.mesh_shape, box_mpc_h=lean.box_mpc_h, seed=11,
                  snapshot_a=(lean.snapshots[0].a,), a_init=0.1, n_steps=3)
    assert full.initial is not None and full.snapshots[0].density is not None
    np.testing.assert_array_equal(lean.snapshots[0].positions_mpc_h, full.snapshots[0].positions_mpc_h)
    np.testing.assert_array_equal(lean.snapshots[0].velocities_km_s, full.snapshots[0].velocities_km_s)
    with pytest.raises(ValueError, match="no output"):
        run_pm(COSMO, k, pk, mesh_shape=4, box_mpc_h=32.0, seed=1, n_steps=1, keep_particles=False, density=False)

#: fused half-kicks vs the carried-force KDK (16^3 in 128 Mpc/h, 10 steps, snapshots at a = 0.5
#: and 1): positions in cells (measured 2e-6), velocities relative to their rms (measured 1.5e-5)
FUSED_KICK_ATOL_CELLS = 1e-5
FUSED_KICK_VEL_RTOL = 1e-4


def test_fused_kicks_equal_the_carried_force_integrator(linear_power):
    """The (x, p) integrator (kick2_i + kick1_{i+1} in one kick, synchronised at snapshots)
    against the previous (x, p, F) one: the same leapfrog, to float32 round-off, at both
    snapshots of a mildly non-linear box."""
    k, pk = linear_power
    box, n = 128.0, 16
    args = dict(mesh_shape=n, box_mpc_h=box, seed=3, snapshot_a=(0.5, 1.0), n_steps=10)
    fused = run_pm(COSMO, k, pk, **args)
    carried = run_pm(COSMO, k, pk, **args, carry_force=True)
    for a, b in zip(fused.snapshots, carried.snapshots):
        d = np.abs(a.positions_mpc_h - b.positions_mpc_h)
        d = np.minimum(d, box - d) / (box / n)  # periodic, in cells
        assert d.max() < FUSED_KICK_ATOL_CELLS, f"a={a.a}: positions differ by {d.max()} cells"
        dv = np.abs(a.velocities_km_s - b.velocities_km_s).max() / b.velocities_km_s.std()
        assert dv < FUSED_KICK_VEL_RTOL, f"a={a.a}: velocities differ by {dv} of their rms"
        assert b.velocities_km_s.std() > 100.0, "velocities too small for the comparison to test anything"


FORCE_VS_JAXPM_RTOL = 1e-5  # our scatter/gather + real FFTs vs jaxpm.pm.pm_forces (measured 2e-6)
# Plane-wave Zel'dovich force, amplitude ratio (measured at 32^3, 0.3-cell wave, k = 2 k_f):
# B=1 with 2 CIC windows compensated 0.999; B=2 uncompensated 1.001 (see pm_forces_compensated).
PLANE_WAVE_RTOL = 0.01


def _lattice(n):
    return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32)] * 3, indexing="ij"), axis=-1) + 0.5


def test_force_matches_jaxpm_pm_forces():
    n = 16
    x = jnp.asarray(_lattice(n) + np.random.default_rng(1).normal(0, 1.5, (n, n, n, 3)).astype(np.float32))
    ref = np.asarray(pm_forces(x, (n, n, n)))
    got = np.asarray(pm_forces_compensated(x, (n, n, n), compensation=0))
    err = np.abs(got - ref).max() / ref.std()
    assert err < FORCE_VS_JAXPM_RTOL, f"max |F - F_jaxpm| / rms = {err}"


@pytest.mark.parametrize("force_mesh_factor", [1, 2])
def test_force_with_chunked_cic_equals_unchunked(force_mesh_factor):
    """16^3 - 5 particles in chunks of 1000 (the last overlapping): the paint sums in another order only."""
    n = 16
    x = _lattice(n).reshape(-1, 3) + np.random.default_rng(2).normal(0, 1.5, (n**3, 3)).astype(np.float32)
    x = jnp.asarray(x[: n**3 - 5])
    whole = np.asarray(pm_forces_compensated(x, (n, n, n), force_mesh_factor=force_mesh_factor))
    chunked = np.asarray(pm_forces_compensated(x, (n, n, n), force_mesh_factor=force_mesh_factor, cic_chunk_size=1000))
    err = np.abs(chunked - whole).max() / whole.std()
    assert err < FORCE_VS_JAXPM_RTOL, f"B={force_mesh_factor}: max |F_chunked - F| / rms = {err}"


@pytest.mark.parametrize("force_mesh_factor", [1, 2])
def test_kick_one_component_at_a_time_equals_momenta_plus_force(force_mesh_factor):
    """pm_kick (components read and added one at a time, chunked) is p + kick * F."""
    n = 16
    rng = np.random.default_rng(4)
    x = jnp.asarray(_lattice(n) + rng.normal(0, 1.5, (n, n, n, 3)).astype(np.float32))
    p = jnp.asarray(rng.normal(0, 1.0, (n, n, n, 3)).astype(np.float32))
    force = np.asarray(pm_forces_compensated(x, (n, n, n), force_mesh_factor=force_mesh_factor))
    got = np.asarray(pm_kick(p, x, 0.3, (n, n, n), force_mesh_factor=force_mesh_factor, cic_chunk_size=1000))
    err = np.abs(got - (np.asarray(p) + 0.3 * force)).max() / (0.3 * force.std())
    assert err < FORCE_VS_JAXPM_RTOL, f"B={force_mesh_factor}: max |p_kicked - (p + k F)| / (k rms F) = {err}"


@pytest.mark.parametrize("force_mesh_factor", [1, 2])
def test_force_of_plane_wave_matches_zeldovich(force_mesh_factor):
    """Particles displaced by psi = A sin(k q): before shell crossing the 1D force is exactly psi."""
    n, amp, mode = 32, 0.3, 2
    q = _lattice(n) - 0.5
    psi = amp * np.sin(2 * np.pi * mode * q[..., 0] / n)
    x = _lattice(n)
    x[..., 0] += psi
    force = np.asarray(pm_forces_compensated(jnp.asarray(x), (n, n, n), force_mesh_factor=force_mesh_factor))
    ratio = float((force[..., 0] * psi).sum() / (psi**2).sum())
    assert abs(ratio - 1) < PLANE_WAVE_RTOL, f"B={force_mesh_factor}: force / Zel'dovich amplitude {ratio}"
    assert np.abs(force[..., 1:]).max() < 1e-4, "transverse force on a plane wave"


@pytest.mark.parametrize("shape", [(16, 16, 16), (12, 10, 14)])
def test_lpt_on_grid_matches_jaxpm_lpt(shape):
    """Our 2LPT (forces on the mesh, real FFTs, components one at a time) against jaxpm's own
    lpt(order=2) (CIC read at zero displacement, complex FFTs), on a cubic and a rectangular
    mesh: equal to float32 rounding."""
    cosmo = jax_cosmology(Cosmology(Omega_m=0.27, sigma_8=0.85))
    k = np.geomspace(1e-3, 10.0, 128)
    box = tuple(8.0 * n for n in shape)
    delta = linear_field(shape, box, power_interpolator(k, 2e4 * (k / 0.02) / (1 + (k / 0.02) ** 2.6)),
                         jax.random.PRNGKey(3))
    ours = jax.jit(lpt_on_grid)(cosmo, delta, 0.1)
    ref = lpt(cosmo, delta, a=0.1, order=2)  # (dx, p, f): the force is not made by ours
    assert len(ours) == 2
    for name, x, y in zip(("dx", "p"), ours, ref):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape, name
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * np.abs(y).max(), err_msg=name)
    # run_pm's particles: the lattice + 1/2 + dx, written in place of dx
    positions, _ = lpt_from_potentials(*lpt_potentials(cosmo, delta, 0.1), shape, lattice_offset=0.5)
    lattice = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    np.testing.assert_allclose(np.asarray(positions), lattice + 0.5 + np.asarray(ours[0]), rtol=0, atol=1e-5 * max(shape))
