"""Tests of the LDL training-data sources (clustersbi.gas): CAMELS loader and synthetic target."""

from __future__ import annotations

import astropy.constants as const
import astropy.units as units
import h5py
import numpy as np
import pytest

from clustersbi import gas, mesh

NE_RTOL = 1e-6  # float64 bookkeeping vs an independent astropy-units computation
T_RTOL = 1e-6
NE_MEAN_RTOL = 1e-10  # the synthetic model renormalises to the cosmic mean exactly

FID = dict(omega_m=0.3, sigma_8=0.8, a_sn1=1.0, a_sn2=1.0, a_agn1=1.0, a_agn2=1.0)
BOX = 32.0
MESH = (16, 16, 16)


def _write_snapshot(path, box_ckpc_h, n_side, u_km2_s2, x_e, m_gas, h=0.6711, z=0.21):
    """A CAMELS-layout snapshot: gas and DM on a uniform lattice (uniform density)."""
    q = (np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.25)
    pos = q * box_ckpc_h / n_side
    n = len(pos)
    with h5py.File(path, "w") as f:
        hdr = f.create_group("Header")
        hdr.attrs["BoxSize"] = box_ckpc_h
        hdr.attrs["Redshift"] = z
        hdr.attrs["Omega0"] = 0.3
        hdr.attrs["OmegaLambda"] = 0.7
        hdr.attrs["HubbleParam"] = h
        hdr.attrs["MassTable"] = np.array([0.0, 0.0065, 0, 0, 0, 0])
        g = f.create_group("PartType0")
        g["Coordinates"] = pos.astype(np.float32)
        g["Masses"] = np.full(n, m_gas, np.float32)
        g["ElectronAbundance"] = np.full(n, x_e, np.float32)
        g["InternalEnergy"] = np.full(n, u_km2_s2, np.float32)
        g["Density"] = np.full(n, 1.0, np.float32)
        d = f.create_group("PartType1")
        d["Coordinates"] = (pos + 0.5 * box_ckpc_h / n_side).astype(np.float32) % box_ckpc_h
    return n


def test_camels_loader_uniform_gas_matches_hand_computation(tmp_path):
    box_ckpc_h, n_side, u, x_e, m_gas, h, z = 25000.0, 16, 2.5e4, 1.15, 1.2e-3, 0.6711, 0.21
    path = tmp_path / "snap_033.hdf5"
    n = _write_snapshot(path, box_ckpc_h, n_side, u, x_e, m_gas, h, z)
    grid = gas.load_camels_snapshot(path, cell_mpc_h=25.0 / 8)
    assert grid.mesh_shape == (8, 8, 8)
    assert grid.box_mpc_h == pytest.approx(25.0) and grid.redshift == pytest.approx(z)
    # hand computation with astropy units: uniform gas -> n_e = N_gas m X_H x_e / (m_p V)
    mass = np.float32(m_gas) * 1e10 * units.Msun / h
    volume = (25.0 * units.Mpc / h) ** 3
    ne_ref = (n * mass * 0.76 * np.float32(x_e) / (const.m_p * volume)).to(units.cm**-3).value
    mu = 4.0 / (1 + 3 * 0.76 + 4 * 0.76 * np.float32(x_e))
    t_ref = ((2.0 / 3.0) * np.float32(u) * (units.km / units.s) ** 2 * mu * const.m_p / const.k_B).to(units.K).value
    ne_rel = np.abs(grid.ne_cm3 / ne_ref - 1).max()
    t_rel = np.abs(grid.t_k / t_ref - 1).max()
    assert ne_rel < NE_RTOL, f"n_e {grid.ne_cm3.mean():.6e} vs hand {ne_ref:.6e} (max rel {ne_rel:.2e})"
    assert t_rel < T_RTOL, f"T {grid.t_k.mean():.6e} vs hand {t_ref:.6e} (max rel {t_rel:.2e})"
    assert grid.dm_pos_mpc_h.shape == (n, 3)
    assert 0 <= grid.dm_pos_mpc_h.min() and grid.dm_pos_mpc_h.max() < 25.0
    assert np.allclose(gas.physical_ne(grid.ne_cm3, z), grid.ne_cm3 * 1.21**3)


def test_paint_gas_particles_conserves_electrons_mass_and_mean_temperature():
    """The loader's per-block sums (clustersbi.mesh CIC, convention "centre"): each channel keeps its
    total, and the mass-weighted T of gas at one temperature is that temperature in every cell."""
    rng = np.random.default_rng(7)
    pos = rng.uniform(0.0, BOX, (5000, 3))
    mass_g = rng.uniform(1e39, 3e39, 5000)
    x_e = rng.uniform(1.0, 1.16, 5000)
    electrons, mass, mass_t = gas.paint_gas_particles(pos, mass_g, x_e, np.full(5000, 3e6), MESH, BOX)
    assert electrons.shape == mass.shape == mass_t.shape == MESH
    n_e_total = np.sum(mass_g * gas.X_H * x_e / const.m_p.to(units.g).value)
    assert electrons.sum() == pytest.approx(n_e_total, rel=NE_RTOL)
    assert mass.sum() == pytest.approx(mass_g.sum(), rel=1e-12)
    filled = mass > 0
    assert filled.mean() > 0.99, filled.mean()
    np.testing.assert_allclose(mass_t[filled] / mass[filled], 3e6, rtol=1e-12)


def test_temperature_of_ionised_gas_known_value():
    # fully ionised H+He (x_e = 1.158): mu = 0.588; u = (3/2) k_B T / (mu m_p) inverted
    x_e = 1 + 0.24 / (2 * 0.76)
    t_ref = 1e7 * units.K
    mu = 4.0 / (1 + 3 * 0.76 + 4 * 0.76 * x_e)
    u = (1.5 * const.k_B * t_ref / (mu * const.m_p)).to(units.km**2 / units.s**2).value
    assert gas.temperature_k(u, x_e) == pytest.approx(1e7, rel=T_RTOL)
    assert gas.mean_molecular_weight(x_e) == pytest.approx(4.0 / 6.8, rel=1e-12)  # 1 + 2.28 + 3.52


def test_painted_cell_emission_measure_uses_the_one_gas_composition():
    """One fully ionised primordial gas particle painted at a cell centre, then seen by the X-ray
    stage: its EM = n_e n_H V equals the hand value x_e (m X_H / m_p)^2 / V_phys, which holds
    only if the X-ray stage's n_e / n_H is the composition the gas was painted with."""
    from clustersbi import constants
    from clustersbi.xray import EmissionTable, voxel_count_rates
    from clustersbi.xray.emission import BremsstrahlungBackend

    x_h = 0.76
    x_e = 1.0 + (1.0 - x_h) / (2.0 * x_h)  # fully ionised H + He, m_He = 4 m_H: 1.158
    assert constants.NE_OVER_NH == pytest.approx(x_e, rel=1e-12) and gas.X_E_IONISED == constants.NE_OVER_NH
    assert BremsstrahlungBackend().ne_over_nh == pytest.approx(x_e, rel=1e-12)
    h, z, chi, cell = 0.7, 0.25, 700.0, BOX / MESH[0]
    m_g = 1e12 * units.Msun.to(units.g)
    centre = np.array([[cell * 4.5, cell * 7.5, cell * 2.5]])  # a cell centre: CIC puts it all in one cell
    electrons = gas.paint_gas_particles(centre, np.array([m_g]), np.array([x_e]), np.array([1e7]), MESH, BOX)[0]
    assert np.count_nonzero(electrons) == 1
    v_com_cm3 = (cell * units.Mpc / h).to(units.cm).value ** 3
    ne_com = electrons / v_com_cm3  # the grid's comoving n_e [cm^-3]
    unit_table = EmissionTable(kt_kev=np.array([0.1, 100.0]), z=np.array([0.0, 1.0]), bands_kev=np.array([[0.5, 2.0]]),
                               rate=np.ones((1, 2, 2)))
    d_cm = (chi * units.Mpc / h).to(units.cm).value
    rate = voxel_count_rates(ne_com, np.full(MESH, 1e7), z, chi, cell**3, h, unit_table)  # EM / (4 pi D^2)
    em_code = rate.sum() * 4.0 * np.pi * d_cm**2
    v_phys = v_com_cm3 / (1.0 + z) ** 3
    n_h = m_g * x_h / const.m_p.to(units.g).value / v_phys
    em_hand = (x_e * n_h) * n_h * v_phys
    assert em_code == pytest.approx(em_hand, rel=NE_RTOL), f"EM {em_code:.6e} vs hand {em_hand:.6e}"


def test_camels_loader_rejects_bad_input(tmp_path):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        f.create_group("PartType0")
    with pytest.raises(ValueError, match="Header"):
        gas.load_camels_snapshot(path)
    with pytest.raises(ValueError, match="cell_mpc_h"):
        gas.load_camels_snapshot(path, cell_mpc_h=-1.0)


@pytest.fixture(scope="module")
def dm():
    return gas.zeldovich_particles(11, 32, BOX, sigma_disp_mpc_h=2.0)


def test_synthetic_mean_density_is_cosmic(dm):
    g = gas.synthetic_gas(dm, MESH, BOX, FID, 0.21)
    ref = (0.049 * 3 * (100 * units.km / units.s / units.Mpc * 0.6711) ** 2 / (8 * np.pi * const.G)
           * 0.76 * (1 + 0.24 / 1.52) / const.m_p).to(units.cm**-3).value
    assert g.ne_cm3.mean() == pytest.approx(ref, rel=1e-4), (g.ne_cm3.mean(), ref)
    assert g.source == "synthetic" and np.all(g.t_k > 0)


@pytest.mark.parametrize("name", ["a_sn1", "a_sn2", "a_agn1", "a_agn2"])
def test_synthetic_feedback_signs(dm, name):
    """Documented signs: each A lowers n_e in dense voxels, raises it in voids, raises T."""
    rho = mesh.assign_to_mesh(dm, MESH, BOX, "cic", convention="centre")  # the DM mesh of synthetic_gas
    dense = rho > np.percentile(rho, 99)
    void = rho < np.percentile(rho, 20)
    lo = gas.synthetic_gas(dm, MESH, BOX, {**FID, name: 0.5}, 0.21)
    hi = gas.synthetic_gas(dm, MESH, BOX, {**FID, name: 2.0}, 0.21)
    d_dense = hi.ne_cm3[dense].mean() / lo.ne_cm3[dense].mean() - 1
    d_void = hi.ne_cm3[void].mean() / lo.ne_cm3[void].mean() - 1
    d_t = hi.t_k.mean() / lo.t_k.mean() - 1
    assert d_dense < 0, f"{name}: dense n_e change {d_dense:+.4f}"
    assert d_void > 0, f"{name}: void n_e change {d_void:+.4f}"
    assert d_t > 0, f"{name}: T change {d_t:+.4f}"
    assert np.mean(hi.ne_cm3) == pytest.approx(np.mean(lo.ne_cm3), rel=NE_MEAN_RTOL)


def test_synthetic_rejects_missing_parameter(dm):
    with pytest.raises(ValueError, match="a_agn2"):
        gas.synthetic_gas(dm, MESH, BOX, {k: v for k, v in FID.items() if k != "a_agn2"}, 0.2)


def test_synthetic_on_a_rectangular_box_is_the_periodic_tiling(dm):
    """A (L, L, 2L) box holding the cubic box's particles twice along z is the same periodic
    field repeated: the per-axis k grid of the rectangular path reproduces the cubic one."""
    tiled = np.concatenate([dm, dm + np.array([0.0, 0.0, BOX], np.float32)])
    cube = gas.synthetic_gas(dm, MESH, BOX, FID, 0.21)
    rect = gas.synthetic_gas(tiled, (MESH[0], MESH[1], 2 * MESH[2]), (BOX, BOX, 2 * BOX), FID, 0.21)
    assert rect.box_mpc_h == (BOX, BOX, 2 * BOX)
    for field in ("ne_cm3", "t_k"):
        ref = getattr(cube, field)
        for half in (slice(0, MESH[2]), slice(MESH[2], None)):
            np.testing.assert_allclose(getattr(rect, field)[:, :, half], ref, rtol=1e-5, err_msg=field)
