"""Cutouts from slab particles and painted gas (clustersbi.sim_cutouts) against analytic results."""
import numpy as np
import pytest

from clustersbi.constants import K_B_KEV_PER_K, MPC_CM, RHO_CRIT_MSUN_H_MPC_H3
from clustersbi.cosmology import efunc
from clustersbi.sim_cutouts import (
    cell_window,
    compton_y_map,
    find_slab_halos,
    projected_mass_map,
    spherical_overdensity,
    xray_rate_map,
)
from clustersbi.xray import compute_emission_table, load_response
from clustersbi.xray.maps import voxel_count_rates

SO_RTOL = 0.02  # particle discreteness of a 20,000-particle isothermal sphere
Y_RTOL = 0.01
SIGMA_T_CM2 = 6.6524587321e-25  # CODATA 2018
M_E_C2_KEV = 510.99895  # CODATA 2018


def _isothermal_sphere(n, r_max, mass, centre, rng):
    """Particles of a singular isothermal sphere, M(<r) = mass r / r_max: radii uniform in r."""
    r = r_max * (np.arange(n) + 0.5) / n
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1)[:, None]
    return centre + r[:, None] * v


def test_so_mass_of_isothermal_sphere():
    rng = np.random.default_rng(1)
    z, omega_m, box = 0.3, 0.3, np.array([40.0, 40.0, 30.0])
    n, r_max, mass = 20000, 3.0, 2e15  # comoving Mpc/h, Msun/h
    centre = np.array([1.0, 20.0, 29.5])  # near faces: the periodic images must be used
    pos = np.mod(_isothermal_sphere(n, r_max, mass, centre, rng), box)
    for delta in (500.0, 200.0):
        # mean comoving density of M(<r) = mass r / r_max is 3 mass / (4 pi r_max r^2)
        rho = delta * RHO_CRIT_MSUN_H_MPC_H3 * efunc(z, omega_m) ** 2 / (1 + z) ** 3
        r_true = np.sqrt(3 * mass / (4 * np.pi * r_max * rho))
        m_true = mass * r_true / r_max
        m, r = spherical_overdensity(pos, box, centre, mass / n, z, omega_m, delta)
        assert abs(m / m_true - 1) < SO_RTOL, (delta, m, m_true)
        assert abs(r / r_true - 1) < SO_RTOL, (delta, r, r_true)


def test_fof_finds_injected_halo_in_slab():
    rng = np.random.default_rng(2)
    box = np.array([32.0, 32.0, 16.0])
    grid = (np.stack(np.meshgrid(*[np.arange(int(b)) + 0.5 for b in box], indexing="ij"), -1)).reshape(-1, 3)
    halo = _isothermal_sphere(500, 0.5, 1.0, np.array([10.0, 31.8, 8.0]), rng)
    pos = np.mod(np.concatenate([grid[:-500], halo]), box)
    halos = find_slab_halos(pos, box, 1e11, mass_min_msun_h=1e13)
    assert len(halos.n_part) == 1 and 480 <= halos.n_part[0] <= 500
    d = np.mod(halos.centre_mpc_h[0] - [10.0, 31.8, 8.0] + 0.5 * box, box) - 0.5 * box
    assert np.linalg.norm(d) < 0.1


def test_projected_mass_sums_particles_inside_cutout():
    rng = np.random.default_rng(3)
    box = np.array([20.0, 20.0, 10.0])
    pos = rng.uniform(0, 1, (5000, 3)) * box
    npix, centre = 8, (1, 18)  # window wraps in both transverse axes
    img = projected_mass_map(pos, box, centre, npix, 1.0, 2.5e10)
    rows = np.arange(centre[0] - 4, centre[0] + 4) % 20
    cols = np.arange(centre[1] - 4, centre[1] + 4) % 20
    inside = np.isin(np.floor(pos[:, 0]), rows) & np.isin(np.floor(pos[:, 1]), cols)
    assert img.sum() == pytest.approx(inside.sum() * 2.5e10, rel=1e-12)
    assert img.shape == (npix, npix)


def test_y_of_uniform_block():
    ne, t, z, cell, h, n_los = 1e-4, 5e7, 0.2, 1.0, 0.7, 12
    block = np.full((4, 4, n_los), ne)
    y = compton_y_map(block, np.full_like(block, t), z, cell, h)
    length_cm = n_los * cell * MPC_CM / h / (1 + z)
    y_true = SIGMA_T_CM2 * ne * (1 + z) ** 3 * t * K_B_KEV_PER_K * length_cm / M_E_C2_KEV
    np.testing.assert_allclose(y, y_true, rtol=Y_RTOL)


def test_xray_map_of_block_is_voxel_rate_sum():
    table = compute_emission_table(load_response(builtin="xmm-epic-pn+2mos"), bands_kev=[[0.5, 1.2], [1.2, 2.0]],
                                   kt_kev=np.geomspace(0.1, 20, 24), z=np.array([0.0, 0.2, 0.4]))
    ne, t, z, chi_lo, h = 2e-5, 3e7, 0.3, 800.0, 0.7
    block = np.full((3, 3, 5), ne)
    img = xray_rate_map(block, np.full_like(block, t), z, chi_lo, 1.0, h, table)
    expected = sum(voxel_count_rates(np.array([ne]), np.array([t]), z, chi_lo + k + 0.5, 1.0, h, table)[:, 0]
                   for k in range(5))
    np.testing.assert_allclose(img, np.broadcast_to(expected[:, None, None], img.shape), rtol=1e-10)
    assert img.shape == (2, 3, 3) and np.all(img > 0)


def test_cell_window_wraps():
    grid = np.arange(6 * 5 * 2).reshape(6, 5, 2)
    win = cell_window(grid, (0, 4), 4)
    np.testing.assert_array_equal(win[:, :, 0], grid[np.ix_([4, 5, 0, 1], [2, 3, 4, 0])][:, :, 0])


def test_slab_cutouts_write_a_valid_cutout_file(tmp_path):
    from clustersbi.cutouts import read_cutouts, write_cutouts
    from clustersbi.sim_cutouts import slab_cutouts

    rng = np.random.default_rng(4)
    shape = (24, 24, 8)
    box = np.array(shape, dtype=float)  # 1 Mpc/h cells
    grid = (np.stack(np.meshgrid(*[np.arange(s) + 0.5 for s in shape], indexing="ij"), -1)).reshape(-1, 3)
    centre = np.array([12.3, 5.6, 4.1])
    n_halo = 400
    pos = np.concatenate([grid[:-n_halo], _isothermal_sphere(n_halo, 1.0, 1.0, centre, rng)])
    ne = np.full(shape, 1e-6)
    t = np.full(shape, 1e6)
    ne[10:15, 3:8, :] = 1e-4
    t[10:15, 3:8, :] = 3e7
    table = compute_emission_table(load_response(builtin="xmm-epic-pn+2mos"), bands_kev=[[0.5, 2.0]],
                                   kt_kev=np.geomspace(0.08, 20, 24), z=np.array([0.0, 0.2, 0.4]))
    slab = {"box_mpc_h": box, "cell_mpc_h": 1.0, "z_centre": 0.2, "chi_lo": 500.0}
    cut = slab_cutouts(pos, ne, t, slab, 0.3, 0.7, table, mass_min_msun_h=1e13, npix=16, exposure_s=1e4)
    write_cutouts(tmp_path / "c.h5", cut)
    back = read_cutouts(tmp_path / "c.h5")
    assert back.n == 1 and back.source == "simulation"
    assert back.channels == ["xray_0.5-2", "y", "mass"]
    m_part = RHO_CRIT_MSUN_H_MPC_H3 * 0.3 * np.prod(box) / len(pos)
    # the whole slab depth is projected: the halo and 16 x 16 x 8 background particles, less the halo's stand-ins
    assert back.images["mass"][0].sum() == pytest.approx(m_part * (16 * 16 * 8 + n_halo) , rel=0.02)
    assert 0 < back.M500c[0] < back.M200c[0] <= m_part * (n_halo + 50)
    assert back.pixel_kpc_array()[0] == pytest.approx(1e3 / 0.7 / 1.2)
    # the hot block dominates the X-ray and y maps, centred near the halo (cell 12, 5 -> pixel 8, 8)
    img = back.images["xray_0.5-2"][0]
    assert np.unravel_index(np.argmax(img), img.shape)[0] in range(6, 11) and img.max() > 100 * np.median(img)
