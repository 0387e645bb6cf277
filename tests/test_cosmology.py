"""Background distances, growth and CAMB linear power against independent references; the cosmology stage's chunk file."""

import numpy as np
import pytest

from clustersbi.cosmology import (
    Cosmology,
    angular_diameter_distance_mpc_h,
    camb_power,
    comoving_distance_mpc_h,
    eisenstein_hu_power,
    growth_factor,
    growth_rate,
    luminosity_distance_mpc_h,
    redshift_at_comoving_distance,
    sigma_r,
)
from clustersbi.design import ChunkDesign, DesignSpec, Prior, SimulationRecord, chunk_design
from clustersbi.io import ChunkFile
from clustersbi.products import DISTANCE_TABLE_Z, GROWTH_TABLE_A, read_linear_power
from clustersbi.stages.cosmology import linear_power_stage

DISTANCE_RTOL = 1e-6  # our quadrature vs astropy's
GROWTH_RTOL = 1e-4  # Heath integral vs colossus' growth factor (same background)
SIGMA8_RTOL = 1e-3  # issue requirement: sigma_8 recomputed from the output P(k)
#: Eisenstein & Hu (1998) reproduce the transfer function to a few per cent (their sec. 5);
#: with BAO wiggles the residual phase error is the largest part.
EH_RTOL = 0.05
CAMB_GROWTH_RTOL = 3e-3  # CAMB includes radiation, our D(a) does not (~0.1% at z = 1)

K = np.geomspace(1e-4, 20.0, 512)


@pytest.fixture(scope="session")
def fiducial_power():
    return camb_power(Cosmology(), [0.0, 1.0], K)


@pytest.mark.parametrize("omega_m", [0.1, 0.3071, 0.5])
def test_distances_match_astropy(omega_m):
    from astropy.cosmology import FlatLambdaCDM

    ref = FlatLambdaCDM(H0=100.0, Om0=omega_m, Tcmb0=0.0)
    z = np.array([0.01, 0.1, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(comoving_distance_mpc_h(z, omega_m), ref.comoving_distance(z).value, rtol=DISTANCE_RTOL)
    np.testing.assert_allclose(luminosity_distance_mpc_h(z, omega_m), ref.luminosity_distance(z).value, rtol=DISTANCE_RTOL)
    np.testing.assert_allclose(
        angular_diameter_distance_mpc_h(z, omega_m), ref.angular_diameter_distance(z).value, rtol=DISTANCE_RTOL
    )
    np.testing.assert_allclose(redshift_at_comoving_distance(comoving_distance_mpc_h(z, omega_m), omega_m), z, rtol=1e-5)


@pytest.mark.parametrize("omega_m", [0.15, 0.3071, 0.5])
def test_growth_matches_colossus(omega_m):
    from clustersbi.cosmology import colossus_cosmology

    cosmo = Cosmology(Omega_m=omega_m)
    ref = colossus_cosmology(cosmo)
    z = np.array([0.0, 0.5, 1.0, 3.0, 9.0])
    ours = growth_factor(1.0 / (1.0 + z), omega_m)
    theirs = ref.growthFactor(z) / ref.growthFactor(0.0)
    np.testing.assert_allclose(ours, theirs, rtol=GROWTH_RTOL)


def test_growth_rate_matches_numerical_derivative():
    a = np.array([0.1, 0.5, 1.0])
    eps = 1e-5
    numeric = (np.log(growth_factor(a * (1 + eps), 0.3)) - np.log(growth_factor(a * (1 - eps), 0.3))) / (
        np.log1p(eps) - np.log1p(-eps)
    )
    np.testing.assert_allclose(growth_rate(a, 0.3), numeric, rtol=1e-6)
    # Einstein-de Sitter limit at early times: f -> 1
    assert abs(growth_rate(0.01, 0.3) - 1.0) < 1e-3


def test_sigma8_recomputed_from_output(fiducial_power):
    s8 = sigma_r(K, fiducial_power.pk_mpc3_h3[0], 8.0)
    assert abs(s8 / 0.8224 - 1) < SIGMA8_RTOL, s8


@pytest.mark.parametrize("params", [dict(Omega_m=0.2, sigma_8=0.65, n_s=0.9), dict(Omega_m=0.45, sigma_8=0.95, h=0.8)])
def test_sigma8_normalisation_across_design(params):
    p = camb_power(Cosmology(**params), [0.0], K)
    assert abs(sigma_r(K, p.pk_mpc3_h3[0]) / params["sigma_8"] - 1) < SIGMA8_RTOL


def test_shape_matches_eisenstein_hu(fiducial_power):
    sel = (K > 1e-3) & (K < 1.0)
    ratio = fiducial_power.pk_mpc3_h3[0, sel] / eisenstein_hu_power(Cosmology(), K[sel])
    assert np.max(np.abs(ratio - 1)) < EH_RTOL, np.max(np.abs(ratio - 1))


def test_camb_growth_matches_ours(fiducial_power):
    ratio = fiducial_power.pk_mpc3_h3[1, :50] / fiducial_power.pk_mpc3_h3[0, :50]
    expected = growth_factor(0.5, 0.3071) ** 2
    np.testing.assert_allclose(ratio, expected, rtol=CAMB_GROWTH_RTOL)


def test_invalid_cosmology_is_rejected():
    with pytest.raises(ValueError, match="Omega_b"):
        Cosmology(Omega_m=0.04, Omega_b=0.05)


def test_linear_power_stage_writes_the_design_cosmologies(tmp_path):
    """The cosmology stage's chunk file: simulation records, cosmologies and P(k) normalised to them."""
    spec = DesignSpec(
        outer=(Prior("Omega_m", r"\Omega_m", "uniform", 0.2, 0.4), Prior("sigma_8", r"\sigma_8", "uniform", 0.7, 0.9)),
        inner=(), n_simulations=3, n_inner=1, chunk_size=2, seed=4, split_fractions=(1.0, 0.0, 0.0, 0.0),
    )
    params = chunk_design(spec, 1)  # the last chunk: one simulation (index 2)
    fiducial = {"h": 0.7, "n_s": 0.96, "Omega_b": 0.049}
    linear_power_stage(params, fiducial, [0.0], (K[0], K[-1], K.size), tmp_path / "linear.h5")
    (record,) = ChunkDesign.from_params(params)
    with ChunkFile.open(tmp_path / "linear.h5") as f:
        ((attrs, group),) = f.simulations()
        assert SimulationRecord.from_attrs(attrs) == record
        np.testing.assert_allclose(group["growth"][()], growth_factor(GROWTH_TABLE_A, record.parameters["Omega_m"]))
        np.testing.assert_allclose(group["chi_mpc_h"][()], comoving_distance_mpc_h(DISTANCE_TABLE_Z, record.parameters["Omega_m"]))
    cosmo, linear = read_linear_power(tmp_path / "linear.h5", record.index)
    assert cosmo == Cosmology.from_mapping(record.parameters, fiducial)
    np.testing.assert_allclose(linear.k_h_mpc, K, rtol=1e-12)
    s8 = sigma_r(linear.k_h_mpc, linear.pk_mpc3_h3[0], 8.0)
    assert abs(s8 / cosmo.sigma_8 - 1) < SIGMA8_RTOL, f"sigma_8 {s8} vs the design's {cosmo.sigma_8}"
    with pytest.raises(KeyError, match="no simulation 0"):
        read_linear_power(tmp_path / "linear.h5", 0)
