"""The one painter (clustersbi.mesh) and the grids of the simulation chain that must line up.

References: particles at known positions (cell centres and a cell corner) whose CIC weights
are exact; exact properties of CIC interpolation (constants and linear fields); the numpy
B-spline painter against the JAX one; the definition of the two cell conventions (they differ
by a translation of half a cell).

Every grid of the simulation chain uses the convention "centre" (cell i spans [i H, (i+1) H),
centred at (i + 1/2) H): the PM density, the LDL input mesh, the synthetic and CAMELS gas grids,
and the X-ray painter, which sees cell k of a slab at chi_lo + (k + 1/2) H and a transverse
cell i at -W/2 + (i + 1/2) H from the line of sight. (The PM's unperturbed particles sit half a
cell off the cell centres, at (i + 1) H: run_pm starts them between its mesh points.)
"""

from __future__ import annotations


import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clustersbi import gas, ldl, mesh
from clustersbi.cosmology import Cosmology, comoving_distance_mpc_h
from clustersbi.pm import run_pm
from clustersbi.stages.xray import paint_gas_lightcone
from clustersbi.xray import EmissionTable, SkyGrid
from clustersbi.analytic import jax_float64

# ---- tolerances (named per quantity)
#: float32 JAX painting of exactly representable weights (0, 1/8, 1/2, 1) per cell
EXACT_F32_ATOL = 1e-6
#: float64 numpy painting / exact bookkeeping
EXACT_F64_ATOL = 1e-12
#: numpy (float64) vs JAX (float32) CIC, per cell, relative (cells hold ~10 weights)
NUMPY_VS_JAX_RTOL = 1e-5
#: CIC reading of constant and linear fields in float32, relative to the field's range
READ_RTOL = 1e-5
#: "node" vs "centre" shifted by half a cell: float64 numpy, float32 JAX (absolute, per unit weight)
HALF_CELL_F64_ATOL = 1e-9
HALF_CELL_F32_ATOL = 1e-5
#: synthetic gas without smoothing or depletion vs the painted counts (FFT round trip, float64)
SYNTHETIC_RTOL = 1e-9
#: emission-weighted comoving distance of a bright cell vs chi_lo + (k + 1/2) H [Mpc/h]
#: (redshift_at_comoving_distance is accurate to ~1e-7 relative; half a cell here is 1 Mpc/h)
DEPTH_ATOL_MPC_H = 1e-2
#: 2LPT displacement of the PM particles from their lattice with a negligible linear power, in cells
PM_LATTICE_ATOL_CELLS = 1e-3
#: PM density vs mesh.cic_paint of the snapshot's own particles
PM_DENSITY_RTOL = 1e-5

# ---- a small periodic box with particles at known positions
BOX = 16.0
N = 8
H = BOX / N
SHAPE = (N, N, N)
#: A and B at the centres of cells (1, 2, 3) and (6, 0, 7); C at the corner shared by the cells
#: i in {3, 4}, j in {5, 6}, k in {7, 0} (across the periodic face z = 0).
KNOWN_POSITIONS = np.array([[1.5 * H, 2.5 * H, 3.5 * H], [6.5 * H, 0.5 * H, 7.5 * H], [4.0 * H, 6.0 * H, 0.0]])


def _expected_counts() -> np.ndarray:
    """The CIC counts of KNOWN_POSITIONS in the convention "centre", by hand."""
    counts = np.zeros(SHAPE)
    counts[1, 2, 3] += 1.0
    counts[6, 0, 7] += 1.0
    for i in (3, 4):
        for j in (5, 6):
            for k in (7, 0):
                counts[i, j, k] += 1.0 / 8.0
    return counts


EXPECTED = _expected_counts()


# ----------------------------------------------------------------------------- every grid, the same cells


def test_known_positions_by_both_painters():
    jax_counts = np.asarray(mesh.cic_paint(jnp.asarray(KNOWN_POSITIONS, jnp.float32), SHAPE, BOX, convention="centre"))
    np.testing.assert_allclose(jax_counts, EXPECTED, rtol=0, atol=EXACT_F32_ATOL, err_msg="mesh.cic_paint")
    numpy_counts = mesh.assign_to_mesh(KNOWN_POSITIONS, SHAPE, BOX, "cic", convention="centre")
    np.testing.assert_allclose(numpy_counts, EXPECTED, rtol=0, atol=EXACT_F64_ATOL, err_msg="mesh.assign_to_mesh")


def test_ldl_input_mesh_puts_the_mass_in_the_same_cells():
    assert ldl.MESH_CONVENTION == "centre"
    density = np.asarray(ldl.particle_density(jnp.asarray(KNOWN_POSITIONS, jnp.float32), SHAPE, BOX))
    counts = density * len(KNOWN_POSITIONS) / density.size  # 1 + delta -> particles per cell
    np.testing.assert_allclose(counts, EXPECTED, rtol=0, atol=EXACT_F32_ATOL)


def test_gas_particle_painter_puts_the_mass_in_the_same_cells():
    n = len(KNOWN_POSITIONS)
    mass_g, x_e, t_k = np.full(n, 2.0e40), np.full(n, 1.1), np.array([1e6, 2e6, 4e6])
    electrons, mass, mass_t = gas.paint_gas_particles(KNOWN_POSITIONS, mass_g, x_e, t_k, SHAPE, BOX)
    np.testing.assert_allclose(mass / 2.0e40, EXPECTED, rtol=0, atol=EXACT_F64_ATOL)
    np.testing.assert_allclose(electrons / electrons.sum(), EXPECTED / EXPECTED.sum(), rtol=0, atol=EXACT_F64_ATOL)
    np.testing.assert_allclose(mass_t[1, 2, 3] / mass[1, 2, 3], 1e6, rtol=EXACT_F64_ATOL)
    np.testing.assert_allclose(mass_t[4, 6, 0] / mass[4, 6, 0], 4e6, rtol=EXACT_F64_ATOL)


def test_synthetic_gas_grid_puts_the_mass_in_the_same_cells():
    """Without smoothing or depletion the synthetic n_e is its DM density (floored at 1e-3 of
    the mean) renormalised to the cosmic mean: it peaks in the painted cells, in proportion."""
    model = gas.SyntheticGasParams(r_gas0_mpc_h=1e-8, delta_dep0=1e30)
    theta = dict(omega_m=0.3, sigma_8=0.8, a_sn1=1.0, a_sn2=1.0, a_agn1=1.0, a_agn2=1.0)
    grid = gas.synthetic_gas(KNOWN_POSITIONS, SHAPE, BOX, theta, 0.2, model=model)
    rho = np.maximum(EXPECTED / EXPECTED.mean(), 1e-3)
    expected_ne = gas.mean_electron_density(model.omega_b, 0.6711) * rho / rho.mean()
    np.testing.assert_allclose(grid.ne_cm3, expected_ne, rtol=SYNTHETIC_RTOL)


def _write_camels_snapshot(path, gas_pos_mpc_h, m_gas=1.0e-3, x_e=1.15, u_km2_s2=2.5e4, h=0.6711, z=0.2):
    """A CAMELS-layout snapshot (see tests/test_gas.py) with gas at the given positions."""
    n = len(gas_pos_mpc_h)
    with h5py.File(path, "w") as f:
        hdr = f.create_group("Header")
        hdr.attrs.update({"BoxSize": BOX * 1e3, "Redshift": z, "Omega0": 0.3, "OmegaLambda": 0.7,
                          "HubbleParam": h, "MassTable": np.array([0.0, 0.0065, 0, 0, 0, 0])})
        g = f.create_group("PartType0")
        g["Coordinates"] = (np.asarray(gas_pos_mpc_h) * 1e3).astype(np.float32)  # ckpc/h
        g["Masses"] = np.full(n, m_gas, np.float32)
        g["ElectronAbundance"] = np.full(n, x_e, np.float32)
        g["InternalEnergy"] = np.full(n, u_km2_s2, np.float32)
        f.create_group("PartType1")["Coordinates"] = np.full((4, 3), 0.5 * BOX * 1e3, np.float32)


def test_camels_loader_puts_the_mass_in_the_same_cells(tmp_path):
    _write_camels_snapshot(tmp_path / "snap.hdf5", KNOWN_POSITIONS)
    grid = gas.load_camels_snapshot(tmp_path / "snap.hdf5", cell_mpc_h=H)
    assert grid.mesh_shape == SHAPE
    np.testing.assert_allclose(grid.ne_cm3 / grid.ne_cm3.sum(), EXPECTED / EXPECTED.sum(), rtol=0,
                               atol=EXACT_F64_ATOL)
    occupied = EXPECTED > 0
    assert np.all(grid.t_k[~occupied] == 0) and np.all(grid.t_k[occupied] > 0)
    np.testing.assert_allclose(grid.t_k[occupied], grid.t_k[1, 2, 3], rtol=EXACT_F64_ATOL)  # one temperature


def test_pm_density_is_the_centre_painting_of_its_particles():
    """run_pm (4^3 cells of H, one step, a negligible linear power): every density mesh is mesh.cic_paint of
    the snapshot's particles in the convention "centre". The unperturbed particle (i, j, k) sits at
    (i + 1, j + 1, k + 1) H, the corner of the cells around it, half a cell off their centres in
    every axis (on purpose: CIC weights are then linear in small displacements, run_pm), so the
    lattice paints 8 x 1/8 = 1 into every cell."""
    k = np.geomspace(1e-3, 10.0, 64)
    n = 4  # the smallest mesh keeps the compilation short
    run = run_pm(Cosmology(), k, 1e-12 * k / (1 + k**3), mesh_shape=n, box_mpc_h=n * H, seed=1, snapshot_a=(0.2,),
                 a_init=0.1, n_steps=1)
    lattice = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    for snap in (run.initial, *run.snapshots):
        offset = np.mod(snap.positions_mpc_h / H - (lattice + 1.0) + 0.5 * n, n) - 0.5 * n  # periodic, in cells
        assert np.abs(offset).max() < PM_LATTICE_ATOL_CELLS, f"a={snap.a}: particles off the lattice, {offset.max()}"
        painted = np.asarray(mesh.cic_paint(snap.positions_mpc_h, (n, n, n), n * H, convention="centre"))
        np.testing.assert_allclose(snap.density, painted, rtol=PM_DENSITY_RTOL, err_msg=f"a={snap.a}")
        np.testing.assert_allclose(snap.density, 1.0, atol=10 * PM_LATTICE_ATOL_CELLS)


# X-ray painter: a slab of (8, 8, 4) cells of 2 Mpc/h at chi_lo = 1000 Mpc/h (a cell subtends
# 6.9 arcmin), 6 x 6 pixels of 10 arcmin; the line of sight runs through x = y = W/2 of the box,
# which is a cell face (N even) and a pixel edge (n_pix even).
SLAB_SHAPE = (8, 8, 4)
SLAB_BOX = tuple(n * H for n in SLAB_SHAPE)
CHI_LO_MPC_H = 1000.0
OMEGA_M = 0.3
#: on the line of sight in x (a cell face: half in cells 3 and 4), in the centre of cell 4 in y
#: (sky y in [0, H]), in the centre of cell 2 in depth
BRIGHT_PARTICLE = np.array([[4.0 * H, 4.5 * H, 2.5 * H]])


def _constant_rate_table() -> EmissionTable:
    return EmissionTable(kt_kev=np.array([0.1, 10.0]), z=np.array([0.0, 1.0]), bands_kev=np.array([[0.5, 2.0]]),
                         rate=np.ones((1, 2, 2)))


def test_xray_painter_sees_cells_where_the_painters_put_them():
    """A gas particle painted by the LDL output layer lands at the sky pixels and depth of its position:
    half the flux either side of the line of sight in x, all in the first pixel above it in y, and at
    the comoving distance chi_lo + (2 + 1/2) H. The slab is painted through the X-ray stage
    (stages.xray.paint_gas_lightcone), which keeps the cells inside [chi_lo, chi_hi]."""
    no_layers = ldl.init_params(0, 0)  # the LDL output layer alone: n_e = b1 (1 + delta), mu = 1, b0 = 0
    ne = np.asarray(ldl.ldl_forward(no_layers, jnp.asarray(BRIGHT_PARTICLE, jnp.float32), SLAB_SHAPE, SLAB_BOX))
    bright = np.argwhere(ne > 1.0).tolist()
    assert bright == [[3, 4, 2], [4, 4, 2]], f"the particle was painted into cells {bright}"
    with h5py.File("slab.h5", "w", driver="core", backing_store=False) as f:
        g = f.create_group("slab_00")
        g["ne_cm3"] = 1e-3 * ne
        g["t_k"] = np.full(SLAB_SHAPE, 1e7)
        # the slab is 3.1 cells deep: the stage paints 3 cells of H, the last one's far face at chi_lo + 3 H
        g.attrs.update({"box_mpc_h": np.asarray(SLAB_BOX), "chi_lo": CHI_LO_MPC_H, "chi_hi": CHI_LO_MPC_H + 3.1 * H,
                        "los_axis": 2})
        (slab_map,) = paint_gas_lightcone([g], _constant_rate_table(), SkyGrid(n_pix=6, pixel_arcmin=10.0),
                                          OMEGA_M, 0.7)
    rate = slab_map.rate_cts_s[0]  # [y, x]
    total = rate.sum()
    assert total > 0 and total == pytest.approx(slab_map.total_cells_cts_s[0], rel=1e-6), "flux left the field"
    expected = np.zeros((6, 6))
    expected[3, 2] = expected[3, 3] = 0.5  # y: pixel 3 = [0, 10'); x: pixels 2 and 3 either side of the axis
    # cells with n_e = b1 x 1e-8 (empty) emit ~1e-16 of a full one
    np.testing.assert_allclose(rate / total, expected, rtol=0, atol=1e-9)
    z_emission = float(slab_map.z_rate_sum.sum() / total)
    chi = float(comoving_distance_mpc_h(z_emission, OMEGA_M))
    assert abs(chi - (CHI_LO_MPC_H + 2.5 * H)) < DEPTH_ATOL_MPC_H, (
        f"bright cell k=2 seen at chi = {chi:.4f} Mpc/h, expected chi_lo + 2.5 H = {CHI_LO_MPC_H + 2.5 * H}")


# ----------------------------------------------------------------------------- the painter itself


RECT_SHAPE = (12, 10, 14)
RECT_BOX = (24.0, 30.0, 21.0)  # rectangular cells too: H = (2, 3, 1.5) Mpc/h
RECT_CELL = np.asarray(RECT_BOX) / np.asarray(RECT_SHAPE)


@pytest.fixture(scope="module")
def random_particles():
    rng = np.random.default_rng(21)
    pos = rng.uniform(-1.0, 2.0, (20000, 3)) * np.asarray(RECT_BOX)  # also outside the box: wrapped
    return pos.astype(np.float32), rng.uniform(0.5, 2.0, 20000).astype(np.float32)


@pytest.mark.parametrize("convention", ["centre", "node"])
def test_numpy_cic_equals_jax_cic_on_a_rectangular_mesh(random_particles, convention):
    pos, wts = random_particles
    ref = mesh.assign_to_mesh(pos.astype(np.float64), RECT_SHAPE, RECT_BOX, 2, wts.astype(np.float64),
                              convention=convention)
    got = np.asarray(mesh.cic_paint(pos, RECT_SHAPE, RECT_BOX, wts, convention=convention))
    assert got.shape == RECT_SHAPE and ref.min() > 0, "every cell should hold weight"
    np.testing.assert_allclose(got, ref, rtol=NUMPY_VS_JAX_RTOL)
    assert got.sum() == pytest.approx(float(wts.sum(dtype=np.float64)), rel=NUMPY_VS_JAX_RTOL)


@pytest.mark.parametrize("convention", ["centre", "node"])
def test_cic_read_is_exact_for_constants_and_linear_fields(convention):
    """f(i, j, k) = 2 + 0.5 i - 0.25 j + 1.5 k is read back exactly between the first and last cell
    centres (mesh point i at (i + offset) H, offset 1/2 for "centre", 0 for "node")."""
    offset = {"centre": 0.5, "node": 0.0}[convention]
    rng = np.random.default_rng(5)
    idx = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in RECT_SHAPE], indexing="ij")
    slopes = np.array([0.5, -0.25, 1.5])
    field = 2.0 + sum(s * i for s, i in zip(slopes, idx))
    x = rng.uniform(offset, np.asarray(RECT_SHAPE) - 1 + offset, (2000, 3))  # in cells, away from the seam
    pos = (x * RECT_CELL).astype(np.float32)
    got = np.asarray(mesh.cic_read(jnp.asarray(field, jnp.float32), pos, RECT_BOX, convention=convention))
    expected = 2.0 + (pos.astype(np.float64) / RECT_CELL - offset) @ slopes
    span = field.max() - field.min()
    np.testing.assert_allclose(got, expected, rtol=0, atol=READ_RTOL * span)
    # constants everywhere, seam included
    anywhere = rng.uniform(-1.0, 2.0, (2000, 3)) * np.asarray(RECT_BOX)
    const = np.asarray(mesh.cic_read(jnp.full(RECT_SHAPE, 3.5), anywhere, RECT_BOX, convention=convention))
    np.testing.assert_allclose(const, 3.5, rtol=READ_RTOL)


@pytest.mark.parametrize("scheme", ["ngp", "cic", "tsc", "pcs"])
def test_node_is_centre_translated_by_half_a_cell(random_particles, scheme):
    """assign(pos, "node") == assign(pos + H/2, "centre") == assign(pos, "centre", shift_cells=1/2)."""
    pos, wts = random_particles
    pos = pos.astype(np.float64)
    node = mesh.assign_to_mesh(pos, RECT_SHAPE, RECT_BOX, scheme, wts, convention="node")
    moved = mesh.assign_to_mesh(pos + 0.5 * RECT_CELL, RECT_SHAPE, RECT_BOX, scheme, wts, convention="centre")
    shifted = mesh.assign_to_mesh(pos, RECT_SHAPE, RECT_BOX, scheme, wts, convention="centre", shift_cells=0.5)
    np.testing.assert_allclose(moved, node, rtol=0, atol=HALF_CELL_F64_ATOL)
    np.testing.assert_allclose(shifted, node, rtol=0, atol=HALF_CELL_F64_ATOL)
    # and the two conventions really differ (a map sees the half-cell translation)
    centre = mesh.assign_to_mesh(pos, RECT_SHAPE, RECT_BOX, scheme, wts, convention="centre")
    assert np.abs(centre - node).max() > 1.0


def test_node_is_centre_translated_by_half_a_cell_in_jax(random_particles):
    pos, wts = random_particles
    node = np.asarray(mesh.cic_paint(pos, RECT_SHAPE, RECT_BOX, wts, convention="node"))
    moved = np.asarray(mesh.cic_paint(pos + (0.5 * RECT_CELL).astype(np.float32), RECT_SHAPE, RECT_BOX, wts,
                                      convention="centre"))
    np.testing.assert_allclose(moved, node, rtol=0, atol=HALF_CELL_F32_ATOL * node.max())
    field = jnp.asarray(node)
    read_node = np.asarray(mesh.cic_read(field, pos, RECT_BOX, convention="node"))
    read_moved = np.asarray(mesh.cic_read(field, pos + (0.5 * RECT_CELL).astype(np.float32), RECT_BOX,
                                          convention="centre"))
    np.testing.assert_allclose(read_moved, read_node, rtol=0, atol=HALF_CELL_F32_ATOL * node.max())


def test_float64_positions_paint_and_read_in_float64():
    """With jax_enable_x64 the JAX pair keeps float64 (finite-difference checks of the LDL need it)."""
    with jax_float64():
        pos = jnp.asarray(KNOWN_POSITIONS + 1e-9, jnp.float64)  # a shift float32 would round away
        painted = mesh.cic_paint(pos, SHAPE, BOX, convention="centre")
        read = mesh.cic_read(jnp.asarray(EXPECTED), pos, BOX, convention="centre")
        assert painted.dtype == jnp.float64 and read.dtype == jnp.float64
        ref = mesh.assign_to_mesh(np.asarray(pos), SHAPE, BOX, "cic", convention="centre")
        np.testing.assert_allclose(np.asarray(painted), ref, rtol=0, atol=EXACT_F64_ATOL)
        assert np.abs(np.asarray(painted) - EXPECTED).max() > 1e-11, "the 1e-9 Mpc/h shift was rounded away"
    assert mesh.cic_paint(KNOWN_POSITIONS, SHAPE, BOX, convention="centre").dtype == jnp.float32


# ----------------------------------------------------------------------------- the fast kernels (issue 14)

#: float32 CIC of the same particles summed in another order (per cell, relative to the largest cell)
F32_ORDER_RTOL = 1e-6
#: JAX engine (float32 sums) vs numpy engine (float64), per cell, relative to the largest cell
ENGINE_RTOL = 1e-5
#: ours (float64 positions) vs Pylians' MAS_library (float32 positions and sums), relative to the
#: largest cell (measured: 0 for NGP, 7e-7 to 9e-7 for CIC, TSC, PCS)
MASL_RTOL = 1e-5


def _numpy_cic_paint(x, shape, weights):
    """Independent reference: CIC in mesh units with np.add.at (8 corners, periodic)."""
    out = np.zeros(shape)
    base = np.floor(x).astype(np.int64)
    frac = x - base
    for corner in np.ndindex(2, 2, 2):
        w = weights * np.prod([frac[:, a] if c else 1.0 - frac[:, a] for a, c in enumerate(corner)], axis=0)
        idx = tuple(np.mod(base[:, a] + c, shape[a]) for a, c in enumerate(corner))
        np.add.at(out, idx, w)
    return out


def _numpy_cic_read(field, x):
    """Independent reference: trilinear interpolation of a periodic field at mesh-unit positions."""
    base = np.floor(x).astype(np.int64)
    frac = x - base
    out = np.zeros(len(x))
    for corner in np.ndindex(2, 2, 2):
        w = np.prod([frac[:, a] if c else 1.0 - frac[:, a] for a, c in enumerate(corner)], axis=0)
        out += w * field[tuple(np.mod(base[:, a] + c, field.shape[a]) for a, c in enumerate(corner))]
    return out


def _previous_cic_gather(mesh_vec, x):
    """clustersbi.mesh.cic_gather as it was before issue 14 (the gather it replaced)."""
    shape = mesh_vec.shape[:3]
    flat_field = mesh_vec.reshape(-1, mesh_vec.shape[-1])
    base, frac = mesh._cic_base(x.reshape(-1, 3), shape)
    out = None
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                i, j, k = (
                    jnp.where(base[:, a] + o == shape[a], 0, base[:, a] + o) for a, o in enumerate((dx, dy, dz))
                )
                kern = (
                    (frac[:, 0] if dx else 1.0 - frac[:, 0])
                    * (frac[:, 1] if dy else 1.0 - frac[:, 1])
                    * (frac[:, 2] if dz else 1.0 - frac[:, 2])
                )
                term = flat_field.at[(i * shape[1] + j) * shape[2] + k].get(mode="promise_in_bounds") * kern[:, None]
                out = term if out is None else out + term
    return out


def _previous_cic_read(field, pos, box, convention):
    """clustersbi.mesh.cic_read as it was before issue 14 (one (N, 8) gather)."""
    shape = field.shape
    x = mesh.to_mesh_units(pos, shape, box, convention)
    base, frac = mesh._cic_base(x, shape)
    offsets = jnp.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=jnp.int32)
    idx = (base[:, None, :] + offsets[None, :, :]) % jnp.asarray(shape, jnp.int32)
    weights = jnp.prod(jnp.where(offsets[None, :, :] == 1, frac[:, None, :], 1.0 - frac[:, None, :]), axis=-1)
    flat = (idx[..., 0] * shape[1] + idx[..., 1]) * shape[2] + idx[..., 2]
    return jnp.sum(field.ravel()[flat] * weights, axis=-1)


@pytest.fixture(scope="module")
def mesh_unit_particles():
    """Positions in mesh units of RECT_SHAPE, inside and outside the mesh (wrapped), and a 3-vector field."""
    rng = np.random.default_rng(8)
    x = (rng.uniform(-1.0, 2.0, (5000, 3)) * np.asarray(RECT_SHAPE)).astype(np.float32)
    field = rng.normal(size=RECT_SHAPE + (3,)).astype(np.float32)
    return x, field


def test_cic_gather_equals_the_previous_kernel_and_trilinear_interpolation(mesh_unit_particles):
    x, field = mesh_unit_particles
    got = np.asarray(jax.jit(mesh.cic_gather)(jnp.asarray(field), jnp.asarray(x)))
    previous = np.asarray(jax.jit(_previous_cic_gather)(jnp.asarray(field), jnp.asarray(x)))
    np.testing.assert_array_equal(got, previous)  # same weights, same order of the sum
    # the three components passed as separate meshes (as the PM force does)
    split = np.asarray(jax.jit(mesh.cic_gather)([jnp.asarray(field[..., c]) for c in range(3)], jnp.asarray(x)))
    np.testing.assert_allclose(split, previous, rtol=0, atol=F32_ORDER_RTOL * np.abs(field).max())
    ref = np.stack([_numpy_cic_read(field[..., c].astype(np.float64), x.astype(np.float64)) for c in range(3)], -1)
    np.testing.assert_allclose(got, ref, rtol=0, atol=READ_RTOL * np.abs(field).max())


@pytest.mark.parametrize("convention", ["centre", "node"])
def test_cic_read_and_its_gradients_equal_the_previous_kernel(random_particles, convention):
    """The LDL differentiates through cic_read (mesh and positions) and cic_paint (positions)."""
    pos, _ = random_particles
    pos = jnp.asarray(pos[:4000])
    field = jnp.asarray(np.random.default_rng(3).normal(size=RECT_SHAPE).astype(np.float32))

    def loss(read):
        return lambda f, p: jnp.sum(jnp.sin(read(f, p)))

    new = lambda f, p: mesh.cic_read(f, p, RECT_BOX, convention=convention)  # noqa: E731
    old = lambda f, p: _previous_cic_read(f, p, RECT_BOX, convention)  # noqa: E731
    np.testing.assert_array_equal(np.asarray(new(field, pos)), np.asarray(jax.jit(old)(field, pos)))
    g_new = jax.jit(jax.grad(loss(new), argnums=(0, 1)))(field, pos)
    g_old = jax.jit(jax.grad(loss(old), argnums=(0, 1)))(field, pos)
    for a, b, name in zip(g_new, g_old, ("mesh", "positions")):
        scale = float(np.abs(np.asarray(b)).max())
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=F32_ORDER_RTOL * 4 * scale,
                                   err_msg=f"d/d{name}")


def test_cic_scatter_equals_np_add_at_split_across_cores_or_not():
    """Enough particles for _scatter_parts to split them into independent scatters on a multi-core CPU."""
    rng = np.random.default_rng(13)
    n = 2 * mesh._MIN_PARTICLES_PER_SCATTER + 17
    x = (rng.uniform(-0.5, 1.5, (n, 3)) * np.asarray(RECT_SHAPE)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, n).astype(np.float32)
    got = np.asarray(jax.jit(mesh.cic_scatter, static_argnums=1)(jnp.asarray(x), RECT_SHAPE, jnp.asarray(w)))
    ref = _numpy_cic_paint(x.astype(np.float64), RECT_SHAPE, w.astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=0, atol=NUMPY_VS_JAX_RTOL * ref.max())
    assert got.sum() == pytest.approx(float(w.sum(dtype=np.float64)), rel=NUMPY_VS_JAX_RTOL)


@pytest.mark.parametrize("scheme", ["ngp", "cic", "tsc", "pcs"])
@pytest.mark.parametrize("convention", ["centre", "node"])
def test_jax_assignment_engine_equals_numpy(random_particles, scheme, convention):
    pos, wts = random_particles
    pos, wts = pos.astype(np.float64), wts.astype(np.float64)
    ref = mesh.assign_to_mesh(pos, RECT_SHAPE, RECT_BOX, scheme, wts, convention=convention, shift_cells=0.5)
    got = mesh.assign_to_mesh(pos, RECT_SHAPE, RECT_BOX, scheme, wts, convention=convention, shift_cells=0.5,
                              engine="jax")
    assert got.dtype == np.float32 and got.shape == RECT_SHAPE and got.flags.writeable
    np.testing.assert_allclose(got, ref, rtol=0, atol=ENGINE_RTOL * ref.max())
    assert got.sum(dtype=np.float64) == pytest.approx(wts.sum(), rel=ENGINE_RTOL)


@pytest.mark.parametrize("scheme", ["ngp", "cic", "tsc", "pcs"])
def test_jax_assignment_engine_equals_pylians_mas(scheme):
    masl = pytest.importorskip("MAS_library")
    rng = np.random.default_rng(17)
    n_mesh, box = 24, 60.0
    pos = rng.uniform(0.0, box, (30000, 3)).astype(np.float32)
    theirs = np.zeros((n_mesh,) * 3, np.float32)
    masl.MA(pos, theirs, box, scheme.upper(), verbose=False)
    ours = mesh.assign_to_mesh(pos.astype(np.float64), n_mesh, box, scheme, convention="node", engine="jax")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=MASL_RTOL * theirs.max())


def test_bad_convention_and_mesh_raise():
    with pytest.raises(ValueError, match="convention"):
        mesh.assign_to_mesh(KNOWN_POSITIONS, SHAPE, BOX, "cic", convention="corner")
    with pytest.raises(ValueError, match="mesh_shape"):
        mesh.assign_to_mesh(KNOWN_POSITIONS, (8, 0, 8), BOX, "cic", convention="centre")
    with pytest.raises(ValueError, match="box_mpc_h"):
        mesh.assign_to_mesh(KNOWN_POSITIONS, SHAPE, (16.0, -1.0, 16.0), "cic", convention="centre")
    with pytest.raises(ValueError, match="engine"):
        mesh.assign_to_mesh(KNOWN_POSITIONS, SHAPE, BOX, "cic", convention="centre", engine="torch")


#: chunked vs unchunked CIC paint, relative to the largest cell: the same windows summed in another
#: order (float32, ~20 windows per cell: a few ulp)
CHUNKED_SCATTER_RTOL = 1e-6


@pytest.mark.parametrize("chunk_size", [777, 4999])
def test_chunked_cic_equals_unchunked(mesh_unit_particles, chunk_size):
    """5000 particles in chunks of 777 (six chunks, and a seventh that overlaps the sixth by 439
    particles) or 4999 (the second chunk repeats all but one), weighted, on the non-cubic
    RECT_SHAPE; jitted as the PM force uses them."""
    x, field = mesh_unit_particles
    x = jnp.asarray(x)
    w = jnp.asarray(np.random.default_rng(21).uniform(0.5, 2.0, len(x)).astype(np.float32))
    scatter = jax.jit(mesh.cic_scatter, static_argnums=(1, 3))
    whole = np.asarray(scatter(x, RECT_SHAPE, w, None))
    chunked = np.asarray(scatter(x, RECT_SHAPE, w, chunk_size))
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=CHUNKED_SCATTER_RTOL * whole.max())
    assert chunked.sum(dtype=np.float64) == pytest.approx(float(w.sum(dtype=jnp.float32)), rel=1e-5)
    gather = jax.jit(mesh.cic_gather, static_argnums=2)
    fields = [jnp.asarray(field[..., c]) for c in range(3)]
    # each value is computed by the same formula (XLA may fuse it differently: a few ulp)
    np.testing.assert_allclose(np.asarray(gather(fields, x, chunk_size)), np.asarray(gather(fields, x, None)),
                               rtol=0, atol=F32_ORDER_RTOL * np.abs(field).max())
    with pytest.raises(ValueError, match="chunk_size"):
        mesh.cic_scatter(x, RECT_SHAPE, chunk_size=0)


def test_cic_gather_add_equals_adding_cic_gather(mesh_unit_particles):
    """The kick form of the read: out[:, columns] += scale * values, chunked or not."""
    x, field = mesh_unit_particles
    x = jnp.asarray(x)
    out = jnp.asarray(np.random.default_rng(5).normal(size=(len(x), 3)).astype(np.float32))
    values = np.asarray(mesh.cic_gather(jnp.asarray(field[..., :2]), x))
    expected = np.asarray(out).copy()
    expected[:, [2, 0]] += 0.7 * values
    add = jax.jit(mesh.cic_gather_add, static_argnames=("chunk_size", "columns"))
    for chunk_size in (None, 777):
        got = np.asarray(add(out, jnp.asarray(field[..., :2]), x, 0.7, chunk_size=chunk_size, columns=(2, 0)))
        np.testing.assert_allclose(got, expected, rtol=0, atol=F32_ORDER_RTOL * 4 * np.abs(expected).max(),
                                   err_msg=f"chunk_size={chunk_size}")
