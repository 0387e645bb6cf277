"""Pinocchio backend: writers vs real V5.1 parameter files; readers vs real V5.1 outputs of
every layout (binary against its ASCII counterpart row by row, and the reference rows and
checksums of the sample's README); the DAG-time check and the launcher."""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clustersbi.cosmology import Cosmology
from clustersbi.fof import HALO_COLUMNS, particle_mass_msun_h
from clustersbi.pinocchio import (
    PLC_RECORD_DTYPES,
    RUN_AS_ROOT_VARIABLES,
    PinocchioError,
    check_executable,
    launcher_command,
    launcher_environment,
    pinocchio_parameters,
    pinocchio_seed,
    read_catalogue,
    read_catalogue_binary,
    read_parameter_file,
    read_plc,
    read_plc_binary,
    run_pinocchio,
    write_output_list,
    write_parameter_file,
    write_power_table,
)

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "pinocchio"
needs_data = pytest.mark.skipif(not TESTDATA.is_dir(), reason="real Pinocchio outputs (shared test data) not found")

# ASCII files print each value rounded (catalogue: mass %13.6e, q/x/v %10.2f; light cone:
# mass %15.8e, the rest %16.6f); binary files hold the value itself, so they agree to half a
# unit of the last printed digit. The margin covers the ~1e-12 run-to-run noise of
# double-precision builds (their binary and ASCII files come from separate runs).
CAT_MASS_RTOL = 5.0e-7 * (1 + 1e-3)
CAT_ATOL = 0.005 + 1e-6  # Mpc/h, km/s
PLC_MASS_RTOL = 5.0e-9 * (1 + 1e-3)
PLC_ATOL = 5.0e-7 + 1e-9  # redshift, deg, Mpc/h, km/s
DOUBLE_RTOL = 1e-11  # double-precision values quoted in the README, vs files of another run
MASS_RTOL = 1e-6  # values quoted to 7 significant digits
SUM_RTOL = 1e-6  # README sums are quoted to 7 digits
POS_ATOL_MPC_H = 0.006  # positions quoted to 0.01
COSMO = Cosmology(Omega_m=0.3071, sigma_8=0.8224, h=0.6803, n_s=0.96641, Omega_b=0.048446)
#: The sample runs' particle mass as the stage computes it (Pinocchio prints 5.45508e12).
M_PARTICLE = particle_mass_msun_h(0.3071, 256.0, 64**3)


@functools.lru_cache(maxsize=None)
def _read(name: str, particle_mass: float | None = None) -> pd.DataFrame:
    """A sample file read once per session, in file order (the readers sort by mass)."""
    reader = read_plc if name.endswith(".plc.out") else read_catalogue
    return reader(TESTDATA / name, particle_mass).sort_values("file_row").reset_index(drop=True)


def _recsize(name: str) -> int:
    """Record size from the binary header, read independently of the reader."""
    head = (TESTDATA / name).read_bytes()[:16]
    return struct.unpack("<4i", head)[2] if name.endswith(".catalog.out") else struct.unpack("<3i", head[:12])[1]


def _params(**kw):
    return pinocchio_parameters(COSMO, run_flag="testascii", box_mpc_h=256, grid_size=64, seed=12345,
                                power_file="pk_planck18_z0.txt", catalogue_in_ascii=True, **kw)


# ---------------------------------------------------------------------------- inputs


@needs_data
@pytest.mark.parametrize("sample,kw", [
    ("param_ascii", {}),
    ("param_plc", {"plc": {"z_start": 0.5, "z_stop": 0.05, "aperture_deg": 5}}),
])
def test_parameter_file_matches_real_sample(tmp_path, sample, kw):
    path = write_parameter_file(_params(**kw), tmp_path / "params")
    ours = read_parameter_file(path)
    ref = read_parameter_file(TESTDATA / sample)
    for key in ("RunFlag", "OutputList"):  # run-specific names
        ours.pop(key), ref.pop(key)
    assert set(ours) == set(ref), f"keys differ: ours-only {set(ours) - set(ref)}, sample-only {set(ref) - set(ours)}"
    for key, value in ref.items():
        if value is True or ours[key] is True:
            assert ours[key] is value, key
            continue
        try:
            np.testing.assert_allclose(np.array(ours[key].split(), float), np.array(value.split(), float), rtol=1e-12,
                                       err_msg=key)
        except ValueError:
            assert ours[key] == value, f"{key}: {ours[key]!r} vs {value!r}"


def test_parameter_writer_rejects_unknown_keys(tmp_path):
    params = _params()
    params["OutputInH10"] = True
    with pytest.raises(ValueError, match="OutputInH10"):
        write_parameter_file(params, tmp_path / "p")


def test_power_and_output_list_files(tmp_path):
    k = np.geomspace(1e-3, 10, 50)
    write_power_table(k, 1e4 * k / (1 + (k / 0.02) ** 3), tmp_path / "pk.txt")
    table = np.loadtxt(tmp_path / "pk.txt")
    assert table.shape == (50, 2) and (tmp_path / "pk.txt").read_text()[0] != "#"
    write_output_list([0.1, 0.5, 0.0, 0.5], tmp_path / "outputs")
    z = np.loadtxt(tmp_path / "outputs")
    assert list(z) == [0.5, 0.1, 0.0], f"OutputList not unique and descending: {z}"


@pytest.mark.parametrize("seed,expected", [(12345, 12345), (0, 0), (2**31 - 1, 2**31 - 1), (2**31 + 5, 5),
                                           (2**32 - 1, 2**31 - 1), (np.uint32(2**31 + 7), 7)])
def test_seed_written_is_the_one_reported(tmp_path, seed, expected):
    assert pinocchio_seed(seed) == expected
    params = pinocchio_parameters(COSMO, run_flag="s", box_mpc_h=256, grid_size=8, seed=seed)
    written = read_parameter_file(write_parameter_file(params, tmp_path / "p"))["RandomSeed"]
    assert int(written) == pinocchio_seed(seed) == expected, f"RandomSeed {written!r} for seed {seed}"


@pytest.mark.parametrize("seed,error", [(-1, ValueError), (1e30, TypeError), (3.0, TypeError)])
def test_seed_rejects_non_integers(seed, error):
    with pytest.raises(error):
        pinocchio_seed(seed)


# ---------------------------------------------------------------------------- sample files


@needs_data
def test_sample_files_match_readme_checksums():
    listed = re.findall(r"^([0-9a-f]{64})  (\S+)$", (TESTDATA / "README.md").read_text(), flags=re.M)
    assert len(listed) >= 60, f"only {len(listed)} checksums found in the sample README"
    bad = [name for digest, name in listed
           if hashlib.sha256((TESTDATA / name).read_bytes()).hexdigest() != digest]
    assert not bad, f"sample files differ from their README checksums: {bad}"


# binary catalogue, its ASCII counterpart, record size, halos, and a 12-column ASCII file of
# the same halos whose npart the LIGHT_OUTPUT layouts must reproduce from the mass
CATALOGUE_PAIRS = [
    ("pinocchio.0.5000.runB_binary.catalog.out", "pinocchio.0.5000.runA_ascii.catalog.out", 56, 736, None),
    ("pinocchio.0.1000.runB_binary.catalog.out", "pinocchio.0.1000.runA_ascii.catalog.out", 56, 1071, None),
    ("pinocchio.0.0500.runPLC_D_binary.catalog.out", "pinocchio.0.0500.runPLC_C_ascii.catalog.out", 56, 220, None),
    ("pinocchio.0.5000.testbinary.catalog.out", "pinocchio.0.5000.testascii.catalog.out", 56, 736, None),
    ("pinocchio.0.1000.testbinary.catalog.out", "pinocchio.0.1000.testascii.catalog.out", 56, 1071, None),
    ("pinocchio.0.5000.runE_light.catalog.out", "pinocchio.0.5000.runE_light_ascii.catalog.out", 48, 736,
     "pinocchio.0.5000.runA_ascii.catalog.out"),
    ("pinocchio.0.1000.runE_light.catalog.out", "pinocchio.0.1000.runE_light_ascii.catalog.out", 48, 1071,
     "pinocchio.0.1000.runA_ascii.catalog.out"),
    ("pinocchio.0.0500.runPLC_K_light.catalog.out", "pinocchio.0.0500.runPLC_K_light_ascii.catalog.out", 48, 220,
     "pinocchio.0.0500.runPLC_C_ascii.catalog.out"),
    ("pinocchio.0.5000.runF_double.catalog.out", "pinocchio.0.5000.runF_double_ascii.catalog.out", 96, 736, None),
    ("pinocchio.0.1000.runF_double.catalog.out", "pinocchio.0.1000.runF_double_ascii.catalog.out", 96, 1071, None),
    ("pinocchio.0.0500.runPLC_L_double.catalog.out", "pinocchio.0.0500.runPLC_L_double_ascii.catalog.out", 96, 220,
     None),
    ("pinocchio.0.5000.runG_lightdouble.catalog.out", "pinocchio.0.5000.runG_lightdouble_ascii.catalog.out", 88, 736,
     "pinocchio.0.5000.runF_double_ascii.catalog.out"),
    ("pinocchio.0.1000.runG_lightdouble.catalog.out", "pinocchio.0.1000.runG_lightdouble_ascii.catalog.out", 88, 1071,
     "pinocchio.0.1000.runF_double_ascii.catalog.out"),
]


@needs_data
@pytest.mark.parametrize("binary,ascii,recsize,n_halos,npart_file", CATALOGUE_PAIRS,
                         ids=[p[0].split(".")[2] + "-z" + p[0].split(".")[1] for p in CATALOGUE_PAIRS])
def test_binary_catalogue_matches_ascii_row_by_row(binary, ascii, recsize, n_halos, npart_file):
    assert _recsize(binary) == recsize, f"{binary} is not the {recsize}-byte layout"
    b, a = _read(binary), _read(ascii)
    assert list(b.columns[: len(HALO_COLUMNS)]) == list(HALO_COLUMNS)
    assert len(b) == len(a) == n_halos, f"{len(b)} binary, {len(a)} ASCII halos, expected {n_halos}"
    np.testing.assert_array_equal(b["id"], a["id"], err_msg="ids (file order)")
    np.testing.assert_allclose(b["mass_msun_h"], a["mass_msun_h"], rtol=CAT_MASS_RTOL, atol=0, err_msg="mass")
    for cols in (["qx", "qy", "qz"], ["x", "y", "z"], ["vx", "vy", "vz"]):
        np.testing.assert_allclose(b[cols].to_numpy(), a[cols].to_numpy(), rtol=0, atol=CAT_ATOL, err_msg=str(cols))
    assert np.all((b[["x", "y", "z", "qx", "qy", "qz"]] >= 0) & (b[["x", "y", "z", "qx", "qy", "qz"]] < 256))
    if npart_file is None:  # 12-column ASCII and 56/96-byte records both carry npart
        np.testing.assert_array_equal(b["n_part"], a["n_part"], err_msg="npart")
        assert b["n_part"].min() >= 10
    else:  # LIGHT_OUTPUT: no npart; -1 unless the particle mass is given
        assert (b["n_part"] == -1).all() and (a["n_part"] == -1).all()
        expected = _read(npart_file)["n_part"].to_numpy()
        for name in (binary, ascii):
            np.testing.assert_array_equal(_read(name, M_PARTICLE)["n_part"], expected,
                                          err_msg=f"{name}: npart from the mass")


# binary light cone, its ASCII counterpart, record size, entries, LIGHT_OUTPUT, MinHaloMass
PLC_PAIRS = [
    ("pinocchio.runPLC_D_binary.plc.out", "pinocchio.runPLC_C_ascii.plc.out", 56, 5192, False, 30),
    ("pinocchio.testplcbin.plc.out", "pinocchio.testplc.plc.out", 56, 976, False, 10),
    ("pinocchio.runPLC_H_ap1.plc.out", "pinocchio.runPLC_H_ap1_ascii.plc.out", 56, 3, False, 30),  # ends empty
    ("pinocchio.runPLC_I_ap3.plc.out", "pinocchio.runPLC_I_ap3_ascii.plc.out", 56, 29, False, 30),  # empty inside
    ("pinocchio.runPLC_J_ap10.plc.out", "pinocchio.runPLC_J_ap10_ascii.plc.out", 56, 574, False, 30),
    ("pinocchio.runPLC_K_light.plc.out", "pinocchio.runPLC_K_light_ascii.plc.out", 32, 574, True, 30),
    ("pinocchio.runPLC_L_double.plc.out", "pinocchio.runPLC_L_double_ascii.plc.out", 104, 574, False, 30),
]
PLC_SCALARS = ["redshift_true", "redshift_obs", "theta_deg", "phi_deg"]
PLC_LOUD = ["x", "y", "z", "vx", "vy", "vz", "v_los_km_s"]  # absent under LIGHT_OUTPUT


@needs_data
@pytest.mark.parametrize("binary,ascii,recsize,n_entries,light,min_particles", PLC_PAIRS,
                         ids=[p[0].split(".")[1] for p in PLC_PAIRS])
def test_binary_light_cone_matches_ascii_row_by_row(binary, ascii, recsize, n_entries, light, min_particles):
    assert _recsize(binary) == recsize, f"{binary} is not the {recsize}-byte layout"
    b, a = _read(binary), _read(ascii)
    assert list(b.columns[: len(HALO_COLUMNS)]) == list(HALO_COLUMNS)
    assert len(b) == len(a) == n_entries, f"{len(b)} binary, {len(a)} ASCII entries, expected {n_entries}"
    np.testing.assert_array_equal(b["id"], a["id"], err_msg="ids (file order)")
    np.testing.assert_allclose(b["mass_msun_h"], a["mass_msun_h"], rtol=PLC_MASS_RTOL, atol=0, err_msg="mass")
    for col in PLC_SCALARS + ([] if light else PLC_LOUD):
        np.testing.assert_allclose(b[col], a[col], rtol=0, atol=PLC_ATOL, err_msg=col)
    if light:
        assert b[PLC_LOUD].isna().all().all() and a[PLC_LOUD].isna().all().all(), "LIGHT_OUTPUT cones have no pos/vel"
    else:  # obs_z = true_z + v_los/c (1 + true_z), to float32 precision
        c_km_s = 299792.458
        np.testing.assert_allclose(b["redshift_obs"], b["redshift_true"] + b["v_los_km_s"] / c_km_s
                                   * (1 + b["redshift_true"]), atol=2e-6, err_msg="obs z vs v_los")
    assert (b["n_part"] == -1).all()
    assert _read(binary, M_PARTICLE)["n_part"].min() >= min_particles


@needs_data
def test_catalogue_layouts_agree_with_each_other():
    """LIGHT_OUTPUT changes nothing but npart; double precision rounds to the float values."""
    for z in ("0.5000", "0.1000"):
        ref = _read(f"pinocchio.{z}.runB_binary.catalog.out")
        light = _read(f"pinocchio.{z}.runE_light.catalog.out")
        double = _read(f"pinocchio.{z}.runF_double.catalog.out")
        lightdouble = _read(f"pinocchio.{z}.runG_lightdouble.catalog.out")
        cols = ["id", "mass_msun_h", "x", "y", "z", "vx", "vy", "vz", "qx", "qy", "qz"]
        pd.testing.assert_frame_equal(light[cols], ref[cols], check_exact=True)
        np.testing.assert_array_equal(double["id"], ref["id"])
        np.testing.assert_array_equal(double["n_part"], ref["n_part"])
        np.testing.assert_array_equal(double["mass_msun_h"].to_numpy().astype(np.float32),
                                      ref["mass_msun_h"].to_numpy().astype(np.float32), err_msg="float32(mass)")
        # README maxima 5.8e-5, 2.3e-4, 5.4e-5, plus 10%
        for group, atol in ((["x", "y", "z"], 6.4e-5), (["vx", "vy", "vz"], 2.5e-4), (["qx", "qy", "qz"], 6e-5)):
            np.testing.assert_allclose(double[group].to_numpy(), ref[group].to_numpy(), rtol=0, atol=atol,
                                       err_msg=f"{group}: double vs float build")
        np.testing.assert_array_equal(lightdouble[["id", "mass_msun_h", "qx", "qy", "qz"]],
                                      double[["id", "mass_msun_h", "qx", "qy", "qz"]])
        np.testing.assert_allclose(lightdouble[cols[2:8]].to_numpy(), double[cols[2:8]].to_numpy(), rtol=DOUBLE_RTOL)


@needs_data
def test_light_cone_layouts_agree_with_each_other():
    j = _read("pinocchio.runPLC_J_ap10.plc.out")
    k = _read("pinocchio.runPLC_K_light.plc.out")
    l_ = _read("pinocchio.runPLC_L_double.plc.out")
    shared = ["id", "redshift_true", "mass_msun_h", "theta_deg", "phi_deg", "redshift_obs"]
    pd.testing.assert_frame_equal(k[shared], j[shared], check_exact=True)  # bit-identical (README 8.6)
    np.testing.assert_array_equal(l_["id"], j["id"])
    # double vs float build: the README's maxima (quoted to two digits) plus 10%
    np.testing.assert_allclose(l_["mass_msun_h"], j["mass_msun_h"], rtol=1.9e-9)
    for cols, atol in ((["x", "y", "z"], 3.6e-4), (["vx", "vy", "vz"], 9.6e-3), (["theta_deg", "phi_deg"], 8.8e-4),
                       (["v_los_km_s"], 6.5e-3)):
        np.testing.assert_allclose(l_[cols].to_numpy(), j[cols].to_numpy(), rtol=0, atol=atol, err_msg=str(cols))
    for col in ("redshift_true", "redshift_obs"):  # 1.1e-7, except row 71: 0.448413 in L, 0.448313 in J
        dz = np.abs(l_[col] - j[col]).to_numpy()
        assert np.flatnonzero(dz > 1.2e-7).tolist() == [71] and j["id"][71] == 99391, f"{col}: rows {dz.argsort()[-3:]}"
        assert dz[71] == pytest.approx(1e-4, abs=2e-6), f"{col}: row 71 differs by {dz[71]}"
    # the 10-degree cone is the theta >= 80 part of the 30-degree one, in the same order
    wide = _read("pinocchio.runPLC_C_ascii.plc.out")
    inner = wide[wide["theta_deg"] >= 80].reset_index(drop=True)
    narrow = _read("pinocchio.runPLC_J_ap10_ascii.plc.out")
    pd.testing.assert_frame_equal(inner[shared], narrow[shared], check_exact=True)


def _check_row(row: pd.Series, ref: dict, where: str, exact: bool = False) -> None:
    for col, value in ref.items():
        got = row[col]
        if col in ("id", "n_part") or exact:
            ok = got == value
        elif col == "mass_msun_h":
            ok = abs(got / value - 1) <= MASS_RTOL
        else:
            ok = abs(got - value) <= POS_ATOL_MPC_H
        assert ok, f"{where}: {col} = {got!r}, README says {value!r}"


def _xyz(prefix: str, v) -> dict:
    names = {"x": ("x", "y", "z"), "v": ("vx", "vy", "vz"), "q": ("qx", "qy", "qz")}[prefix]
    return dict(zip(names, v))


# README section 6 (set 1): counts, sums and rows of the z = 0.5, 0.1 and 0.05 catalogues
SET1_CATALOGUES = {
    "0.5000": dict(n=736, n_big=233, sum_big=4.312239e16, sum_all=7.834583e16, np_sum=14362, np_range=(10, 146),
                   first=dict(id=114645, mass_msun_h=3.327598e14, n_part=61, **_xyz("q", (108.69, 0.36, 78.52)),
                              **_xyz("x", (106.87, 251.82, 83.69)), **_xyz("v", (-126.08, -425.59, 392.92))),
                   top_row=60, top=dict(id=104708, mass_msun_h=7.964414e14, n_part=146,
                                        **_xyz("x", (99.09, 139.95, 23.97)), **_xyz("q", (98.99, 141.97, 22.22)),
                                        **_xyz("v", (7.66, -148.81, 71.80))),
                   last=dict(id=174697, mass_msun_h=7.637110e13, n_part=14)),
    "0.1000": dict(n=1071, n_big=428, sum_big=9.142711e16, sum_all=1.371352e17, np_sum=25139, np_range=(10, 217),
                   first=dict(id=114645, mass_msun_h=4.418613e14, n_part=81, **_xyz("q", (108.27, 0.47, 77.11)),
                              **_xyz("x", (106.44, 250.91, 85.14)), **_xyz("v", (-96.27, -465.37, 530.33))),
                   top_row=64, top=dict(id=104708, mass_msun_h=1.183752e15, n_part=217,
                                        **_xyz("x", (99.04, 139.35, 23.88)), **_xyz("q", (99.79, 142.35, 21.12)),
                                        **_xyz("v", (-48.76, -194.61, 115.40))),
                   last=dict(id=236566, mass_msun_h=6.000586e13, n_part=11)),
    "0.0500": dict(n=220, n_big=220, sum_big=6.971590e16, sum_all=6.971590e16, np_sum=12780, np_range=(30, 249),
                   first=dict(id=114645, mass_msun_h=4.418613e14, n_part=81, **_xyz("x", (106.47, 250.77, 85.18))),
                   top_row=32, top=dict(id=104708, mass_msun_h=1.358314e15, n_part=249,
                                        **_xyz("x", (98.81, 139.95, 23.90))),
                   last=dict(id=204775, mass_msun_h=1.800176e14, n_part=33)),
}


@needs_data
@pytest.mark.parametrize("z", sorted(SET1_CATALOGUES))
@pytest.mark.parametrize("fmt", ["ascii", "binary"])
def test_set1_catalogue_reference_values(z, fmt):
    run = {"ascii": "runPLC_C_ascii", "binary": "runPLC_D_binary"} if z == "0.0500" else \
        {"ascii": "runA_ascii", "binary": "runB_binary"}
    name = f"pinocchio.{z}.{run[fmt]}.catalog.out"
    ref, cat = SET1_CATALOGUES[z], _read(name)
    big = cat["mass_msun_h"] > 1e14
    assert (len(cat), int(big.sum()), int(cat["n_part"].sum())) == (ref["n"], ref["n_big"], ref["np_sum"]), name
    assert (cat["n_part"].min(), cat["n_part"].max()) == ref["np_range"], name
    assert cat.loc[big, "mass_msun_h"].sum() == pytest.approx(ref["sum_big"], rel=SUM_RTOL)
    assert cat["mass_msun_h"].sum() == pytest.approx(ref["sum_all"], rel=SUM_RTOL)
    assert cat["mass_msun_h"].idxmax() == ref["top_row"], name
    for where, row in (("first", 0), ("top", ref["top_row"]), ("last", len(cat) - 1)):
        _check_row(cat.iloc[row], ref[where], f"{name} {where} row")


@needs_data
@pytest.mark.parametrize("name", ["pinocchio.runPLC_C_ascii.plc.out", "pinocchio.runPLC_D_binary.plc.out"])
def test_set1_light_cone_reference_values(name):
    plc = _read(name)
    assert len(plc) == 5192 and plc["id"].nunique() == 208
    for col, lo, hi in (("redshift_true", 0.050565, 0.499950), ("redshift_obs", 0.051857, 0.502990),
                        ("theta_deg", 60.0005, 89.8302), ("phi_deg", 0.5113, 359.7528)):
        assert plc[col].min() == pytest.approx(lo, abs=6e-5) and plc[col].max() == pytest.approx(hi, abs=6e-5), col
    assert plc["mass_msun_h"].min() == pytest.approx(1.636523e14, rel=MASS_RTOL)
    assert plc["mass_msun_h"].sum() == pytest.approx(1.442661e18, rel=SUM_RTOL)
    assert [int((plc["redshift_true"] < z).sum()) for z in (0.1, 0.2, 0.3)] == [71, 570, 1556]
    first = plc.iloc[0]
    assert first["id"] == 77071
    np.testing.assert_allclose(
        first[["redshift_true", "x", "y", "z", "vx", "vy", "vz", "theta_deg", "phi_deg", "v_los_km_s",
               "redshift_obs"]].to_numpy(float),
        [0.499698, 1098.912598, 724.766479, 66.441589, 89.872665, 9.726561, 619.249817, 78.056236, 345.902374,
         111.492989, 0.500256], rtol=0, atol=PLC_ATOL)
    assert first["mass_msun_h"] == pytest.approx(2.01837894e14, rel=PLC_MASS_RTOL)
    assert plc["mass_msun_h"].idxmax() == 2975
    top = plc.iloc[2975]
    assert top["id"] == 104708 and top["mass_msun_h"] == pytest.approx(1.32558394e15, rel=PLC_MASS_RTOL)
    np.testing.assert_allclose(top[["redshift_true", "x", "y", "z", "theta_deg", "phi_deg", "v_los_km_s",
                                    "redshift_obs"]].to_numpy(float),
                               [0.058494, 98.821243, 140.033371, 23.951443, 77.410149, 219.416962, -142.054214,
                                0.057992], rtol=0, atol=PLC_ATOL)
    last = plc.iloc[-1]
    assert last["id"] == 204775 and last["redshift_true"] == pytest.approx(0.124208, abs=PLC_ATOL)


@needs_data
@pytest.mark.parametrize("fmt", ["ascii", "binary"])
def test_set2_catalogue_reference_values(fmt):
    refs = {
        0.1: dict(n=1071, n_big=428, sum_big=9.1427e16, top_mass=1.183752e15, top_pos=(99.04, 139.35, 23.88),
                  top_np=217),
        0.5: dict(n=736, n_big=233, sum_big=4.3122e16, top_mass=7.964414e14, top_pos=(99.09, 139.95, 23.97),
                  top_np=146),
    }
    for z, ref in refs.items():
        cat = read_catalogue(TESTDATA / f"pinocchio.{z:.4f}.test{fmt}.catalog.out")
        assert len(cat) == ref["n"], f"z={z} {fmt}: {len(cat)} halos"
        big = cat["mass_msun_h"] > 1e14
        assert big.sum() == ref["n_big"], f"z={z} {fmt}: {big.sum()} halos above 1e14"
        assert cat.loc[big, "mass_msun_h"].sum() == pytest.approx(ref["sum_big"], rel=1e-4)
        top = cat.iloc[0]  # the table is sorted by decreasing mass
        assert top["id"] == 104708 and top["n_part"] == ref["top_np"], (top["id"], top["n_part"])
        assert top["mass_msun_h"] == pytest.approx(ref["top_mass"], rel=MASS_RTOL)
        np.testing.assert_allclose(top[["x", "y", "z"]].to_numpy(float), ref["top_pos"], atol=POS_ATOL_MPC_H)


@needs_data
@pytest.mark.parametrize("name", ["pinocchio.testplc.plc.out", "pinocchio.testplcbin.plc.out"])
def test_set2_light_cone_reference_values(name):
    plc = read_plc(TESTDATA / name)
    assert len(plc) == 976
    assert plc["redshift_true"].min() == pytest.approx(0.0544, abs=1e-4)
    assert plc["redshift_true"].max() == pytest.approx(0.4998, abs=1e-4)
    assert 85.0 - 1e-3 < plc["theta_deg"].min() and plc["theta_deg"].max() < 89.9 + 1e-3
    top = plc.iloc[0]
    assert top["id"] == 46430 and top["mass_msun_h"] == pytest.approx(8.946328e14, rel=MASS_RTOL)
    assert top["redshift_true"] == pytest.approx(0.205525, abs=1e-6)
    assert top["redshift_obs"] == pytest.approx(0.204753, abs=1e-6)


# README section 8.7 (set 3): first and last records; binary values as Python prints them
SET3_ROWS = [
    # file, row (file order), values, how they are quoted: "f4" a float32 value as Python prints it
    # (exact), "f8" a float64 value (to DOUBLE_RTOL), "text" as the ASCII file prints it, "6dp" a
    # float32 value to 6 decimals
    ("pinocchio.0.1000.runE_light.catalog.out", 0,
     dict(id=114645, mass_msun_h=441861336465408.0, x=106.4427490234375, y=250.9105224609375, z=85.14232635498047,
          qx=108.2716064453125, qy=0.46912750601768494, qz=77.11109924316406), "f4"),
    ("pinocchio.0.1000.runE_light_ascii.catalog.out", -1,
     dict(id=236566, mass_msun_h=6.000586e13, qx=229.64, qy=195.82, qz=88.55, x=232.85, y=191.97, z=95.47,
          vx=210.59, vy=-279.25, vz=366.11), "text"),
    ("pinocchio.0.5000.runE_light_ascii.catalog.out", -1,
     dict(id=174697, mass_msun_h=7.637110e13, x=175.50, y=166.67, z=168.96), "text"),
    ("pinocchio.0.1000.runF_double.catalog.out", 0,
     dict(id=114645, mass_msun_h=441861335723836.75, x=106.442750500328, y=250.910536851139, z=85.142334529665,
          vx=-96.2701268810, vy=-465.3713247362, vz=530.3289660229, qx=108.27160493827162, qy=0.46913580246912595,
          qz=77.11111111111109, n_part=81), "f8"),
    ("pinocchio.0.1000.runG_lightdouble.catalog.out", 0,
     dict(id=114645, mass_msun_h=441861335723836.75, x=106.442750500328, qx=108.27160493827162), "f8"),
    ("pinocchio.0.1000.runF_double.catalog.out", -1,
     dict(id=236566, mass_msun_h=60005860406940.8, x=232.845171892900, y=191.969077993299, z=95.471670871643,
          n_part=11), "f8"),
    ("pinocchio.0.5000.runF_double.catalog.out", 0, dict(id=114645, mass_msun_h=332759771347580.75, n_part=61), "f8"),
    ("pinocchio.0.5000.runF_double.catalog.out", -1, dict(id=174697, mass_msun_h=76371095063379.2, n_part=14), "f8"),
    ("pinocchio.0.0500.runPLC_L_double.catalog.out", 0, dict(id=114645, mass_msun_h=441861335723836.75), "f8"),
    ("pinocchio.0.0500.runPLC_L_double.catalog.out", -1, dict(id=204775, mass_msun_h=180017581220822.38), "f8"),
    ("pinocchio.0.0500.runPLC_K_light_ascii.catalog.out", -1,
     dict(id=204775, mass_msun_h=1.800176e14, x=208.47, y=254.52, z=149.50), "text"),
    ("pinocchio.runPLC_K_light.plc.out", 0,
     dict(id=85400, redshift_true=0.49643945693969727, mass_msun_h=180017581522944.0, theta_deg=81.90754699707031,
          phi_deg=120.83142852783203, redshift_obs=0.49679693579673767), "f4"),
    ("pinocchio.runPLC_L_double.plc.out", 0,
     dict(id=85400, redshift_true=0.49643946820247, x=850.664910940267, y=984.390532603878, z=-158.425374279524,
          mass_msun_h=180017581220822.38, theta_deg=81.907532106403, phi_deg=120.831427413573,
          redshift_obs=0.49679695486643), "f8"),
    ("pinocchio.runPLC_J_ap10.plc.out", 0,
     dict(id=85400, redshift_true=0.496439, x=850.664917, y=984.390503, z=-158.425385, mass_msun_h=1.80017582e14,
          theta_deg=81.907547, phi_deg=120.831429, v_los_km_s=71.617867, redshift_obs=0.496797), "6dp"),
    ("pinocchio.runPLC_J_ap10.plc.out", -1,
     dict(id=167034, redshift_true=0.086875, mass_msun_h=2.94574224e14, theta_deg=82.261101, phi_deg=134.265717,
          redshift_obs=0.085929), "6dp"),
    ("pinocchio.runPLC_H_ap1.plc.out", 0,
     dict(id=45761, redshift_true=0.427540, x=813.351746, y=812.924377, z=3.378047, vx=164.245758, vy=341.410858,
          vz=-59.038010, mass_msun_h=2.12748051e14, theta_deg=89.830208, phi_deg=275.111725,
          v_los_km_s=357.345306, redshift_obs=0.429242), "6dp"),
    ("pinocchio.runPLC_H_ap1.plc.out", -1,
     dict(id=45761, redshift_true=0.147580, x=301.727386, y=302.059692, z=3.219552, mass_msun_h=3.27304694e14,
          redshift_obs=0.149099), "6dp"),
    ("pinocchio.runPLC_I_ap3.plc.out", 0,
     dict(id=104958, redshift_true=0.475773, x=869.422302, y=916.181763, z=-4.663757, mass_msun_h=2.78208990e14,
          theta_deg=88.485054,
          phi_deg=171.971237, redshift_obs=0.473272), "6dp"),
    ("pinocchio.runPLC_I_ap3.plc.out", -1,  # the entry after the empty chunk
     dict(id=208061, redshift_true=0.095386, x=196.450653, y=198.535599, z=-12.330261, mass_msun_h=1.74562503e14,
          theta_deg=87.454254,
          phi_deg=96.818222, v_los_km_s=-379.407318, redshift_obs=0.094000), "6dp"),
]


@needs_data
@pytest.mark.parametrize("name,row,ref,quoted", SET3_ROWS,
                         ids=[f"{r[0].split('.')[-3]}[{r[1]}]" for r in SET3_ROWS])
def test_set3_reference_rows(name, row, ref, quoted):
    got = _read(name).iloc[row]
    for col, value in ref.items():
        if col in ("id", "n_part") or quoted == "f4":
            ok = got[col] == value
        elif quoted == "f8":  # double precision: run-to-run noise ~1e-13
            ok = got[col] == pytest.approx(value, rel=DOUBLE_RTOL, abs=1e-9)
        elif quoted == "text":
            ok = got[col] == pytest.approx(value, rel=1e-12)
        elif col == "mass_msun_h":  # quoted as %15.8e
            ok = got[col] == pytest.approx(value, rel=PLC_MASS_RTOL)
        else:
            ok = abs(got[col] - value) <= PLC_ATOL
        assert ok, f"{name}[{row}] {col} = {got[col]!r}, README says {value!r}"


@needs_data
@pytest.mark.parametrize("name,n,ids,z_range,theta_range,mass_sum", [
    ("pinocchio.runPLC_H_ap1.plc.out", 3, 1, (0.147580, 0.427540), (89.5667, 89.8302), 7.909863e14),
    ("pinocchio.runPLC_I_ap3.plc.out", 29, 21, (0.095386, 0.493878), (87.0040, 89.8302), 7.849858e15),
    ("pinocchio.runPLC_J_ap10.plc.out", 574, 165, (0.056460, 0.499824), (80.0031, 89.8302), 1.569208e17),
    ("pinocchio.runPLC_K_light.plc.out", 574, 165, (0.056460, 0.499824), (80.0031, 89.8302), 1.569208e17),
    ("pinocchio.runPLC_L_double.plc.out", 574, 165, (0.056460, 0.499824), (80.0031, 89.8310), 1.569208e17),
])
def test_set3_light_cone_summaries(name, n, ids, z_range, theta_range, mass_sum):
    plc = _read(name)
    assert (len(plc), plc["id"].nunique()) == (n, ids), name
    np.testing.assert_allclose([plc["redshift_true"].min(), plc["redshift_true"].max()], z_range, atol=PLC_ATOL)
    np.testing.assert_allclose([plc["theta_deg"].min(), plc["theta_deg"].max()], theta_range, atol=6e-5)
    assert plc["mass_msun_h"].sum() == pytest.approx(mass_sum, rel=SUM_RTOL)


# ---------------------------------------------------------------------------- file structure


@needs_data
def test_catalogue_with_an_empty_task_block(tmp_path):
    """No sample has an empty task block: rebuild runB's z = 0.5 file with task 1 empty
    (``4 | 0 | 4`` and no data markers, as write_halos.c writes it)."""
    raw = (TESTDATA / "pinocchio.0.5000.runB_binary.catalog.out").read_bytes()
    first_block_end = 16 + 12 + 8 + 389 * 56
    assert struct.unpack("<3i", raw[16:28]) == (4, 389, 4)
    (tmp_path / "cat.out").write_bytes(raw[:first_block_end] + struct.pack("<3i", 4, 0, 4))
    cat = read_catalogue(tmp_path / "cat.out").sort_values("file_row")
    full = _read("pinocchio.0.5000.runB_binary.catalog.out")
    assert len(cat) == 389
    np.testing.assert_array_equal(cat["id"], full["id"][:389])
    (tmp_path / "bad.out").write_bytes(raw[:first_block_end] + struct.pack("<5i", 4, 0, 4, 0, 0))
    with pytest.raises(PinocchioError, match="unread bytes"):
        read_catalogue(tmp_path / "bad.out")


@needs_data
def test_light_cone_empty_chunks_with_or_without_data_markers(tmp_path):
    """Pinocchio V5.1 writes an empty chunk as ``4 0 4 0 0``; a writer that drops the
    ``0 | 0`` data markers must read the same."""
    h = (TESTDATA / "pinocchio.runPLC_H_ap1.plc.out").read_bytes()
    i = (TESTDATA / "pinocchio.runPLC_I_ap3.plc.out").read_bytes()
    assert h[-20:] == struct.pack("<5i", 4, 0, 4, 0, 0) and i[1620:1640] == h[-20:]
    (tmp_path / "h.out").write_bytes(h[:-8])
    (tmp_path / "i.out").write_bytes(i[:1632] + i[1640:])
    for variant, name in (("h.out", "pinocchio.runPLC_H_ap1.plc.out"), ("i.out", "pinocchio.runPLC_I_ap3.plc.out")):
        got = read_plc(tmp_path / variant).sort_values("file_row").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, _read(name), check_exact=True)
    (tmp_path / "cut.out").write_bytes(i[:-2])
    with pytest.raises(PinocchioError, match="truncated"):
        read_plc(tmp_path / "cut.out")
    (tmp_path / "bad.out").write_bytes(i[:1632] + struct.pack("<2i", 0, 56) + i[1640:])
    with pytest.raises(PinocchioError, match="closing marker"):
        read_plc(tmp_path / "bad.out")


def test_light_cone_light_double_layout(tmp_path):
    """48-byte records (LIGHT_OUTPUT + DOUBLE_PRECISION_PRODUCTS; no sample file): uint64 id
    and five float64 (true z, mass, theta, phi, observed z), packed here field by field."""
    assert PLC_RECORD_DTYPES[48].itemsize == 48
    rows = [(7, 0.25, 3e14, 85.5, 12.0, 0.2512), (9, 0.4, 2e14, 88.0, 300.5, 0.3987)]
    body = b"".join(struct.pack("<Q5d", *r) for r in rows)
    data = struct.pack("<3i", 4, 48, 4) + struct.pack("<3i", 4, 2, 4) + struct.pack("<i", 96) + body + \
        struct.pack("<i", 96) + struct.pack("<5i", 4, 0, 4, 0, 0)
    (tmp_path / "plc.out").write_bytes(data)
    plc = read_plc_binary(tmp_path / "plc.out", particle_mass_msun_h=1e13).sort_values("file_row")
    expected = np.array([r[1:] for r in rows])
    np.testing.assert_array_equal(plc["id"], [7, 9])
    np.testing.assert_array_equal(
        plc[["redshift_true", "mass_msun_h", "theta_deg", "phi_deg", "redshift_obs"]].to_numpy(), expected)
    assert plc[PLC_LOUD].isna().all().all() and plc["n_part"].tolist() == [30, 20]


def test_unknown_record_sizes_rejected(tmp_path):
    (tmp_path / "cat.out").write_bytes(struct.pack("<4i", 8, 1, 60, 8) + struct.pack("<3i", 4, 0, 4))
    with pytest.raises(PinocchioError, match="record size 60.*88 \\(both\\)"):
        read_catalogue_binary(tmp_path / "cat.out")
    (tmp_path / "plc.out").write_bytes(struct.pack("<3i", 4, 40, 4))
    with pytest.raises(PinocchioError, match="record size 40.*32 \\(LIGHT_OUTPUT\\)"):
        read_plc_binary(tmp_path / "plc.out")
    (tmp_path / "cat.txt").write_text("# header\n 1 2.0 3.0\n")
    with pytest.raises(PinocchioError, match="3 columns"):
        read_catalogue(tmp_path / "cat.txt")


# ---------------------------------------------------------------------------- executable and launcher


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_check_executable_names_config_key(tmp_path, monkeypatch):
    ran = tmp_path / "ran"
    exe = _script(tmp_path / "fake_pinocchio", f"touch {ran}\n")
    (tmp_path / "plain").write_text("not runnable")
    for section, key, why in [
        (None, "`pinocchio`", "missing"),
        ({}, "pinocchio.executable", "not set"),
        ({"executable": None}, "pinocchio.executable", "not set"),
        ({"executable": str(tmp_path / "missing")}, "pinocchio.executable", "does not exist"),
        ({"executable": "no-such-pinocchio-program"}, "pinocchio.executable", "not a program on PATH"),
        ({"executable": str(tmp_path / "plain")}, "pinocchio.executable", "not executable"),
        ({"executable": str(tmp_path)}, "pinocchio.executable", "directory"),
        ({"executable": str(exe), "n_tasks": 0}, "pinocchio.n_tasks", "integer >= 1"),
        ({"executable": str(exe), "mpi_launcher": "no-such-mpirun -np {n_tasks}"}, "pinocchio.mpi_launcher",
         "not found"),
        ({"executable": str(exe), "mpi_launcher": "sh -c {ntasks}"}, "pinocchio.mpi_launcher", "template"),
        ({"executable": str(exe), "mpi_launcher": "sh '-c"}, "pinocchio.mpi_launcher", "template"),
        ({"executable": str(exe), "mpi_launcher": "", "n_tasks": 2}, "pinocchio.n_tasks", "launcher"),
    ]:
        with pytest.raises(PinocchioError, match=re.escape(key)) as err:
            check_executable(section)
        assert why in str(err.value), f"{section}: {err.value}"
    ok = check_executable({"executable": str(exe), "mpi_launcher": "", "n_tasks": 1})
    assert ok == {"executable": str(exe.resolve()), "mpi_launcher": "", "launcher_argv": []}
    monkeypatch.chdir(tmp_path)
    ok = check_executable({"executable": "./fake_pinocchio", "mpi_launcher": "sh -c 'exit 0' -np {n_tasks}",
                           "n_tasks": 4})
    assert ok["executable"] == str(exe.resolve()) and ok["launcher_argv"] == ["sh", "-c", "exit 0", "-np", "4"]
    assert ok["mpi_launcher"] == shutil.which("sh")
    assert not ran.exists(), "check_executable must not run anything"


def test_run_reports_status_log_and_missing_executable(tmp_path):
    exe = _script(tmp_path / "fake_pinocchio", "echo running $1; exit 3\n")
    (tmp_path / "p").write_text("RunFlag x\n")
    with pytest.raises(PinocchioError, match="status 3"):
        run_pinocchio(tmp_path / "p", str(exe), tmp_path / "log", mpi_launcher="")
    assert "running" in (tmp_path / "log").read_text()
    with pytest.raises(PinocchioError, match="pinocchio.executable"):
        run_pinocchio(tmp_path / "p", str(tmp_path / "missing"), tmp_path / "log", mpi_launcher="")


def test_launcher_environment_lets_root_run_open_mpi(tmp_path, monkeypatch):
    for name in RUN_AS_ROOT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    exe = _script(tmp_path / "fake_pinocchio", "echo pinocchio ran on $1\n")
    # stands in for mpirun: reports what it was given, then runs the program after "-np N"
    launcher = _script(tmp_path / "fake_mpirun",
                       'echo "np=$2 allow=${OMPI_ALLOW_RUN_AS_ROOT:-unset},${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-unset}"\n'
                       'shift 2\nexec "$@"\n')
    (tmp_path / "p").write_text("RunFlag x\n")
    template = f"{launcher} -np {{n_tasks}}"
    for euid, allow in ((0, "1,1"), (1000, "unset,unset")):
        monkeypatch.setattr("clustersbi.pinocchio.os.geteuid", lambda euid=euid: euid)
        env = launcher_environment(template)
        assert all((env.get(name) == "1") == (euid == 0) for name in RUN_AS_ROOT_VARIABLES)
        assert not any(name in launcher_environment("") for name in RUN_AS_ROOT_VARIABLES), "no launcher, no flags"
        run_pinocchio(tmp_path / "p", str(exe), tmp_path / "log", mpi_launcher=template, n_tasks=2)
        log = (tmp_path / "log").read_text()
        assert f"np=2 allow={allow}" in log and f"pinocchio ran on {tmp_path / 'p'}" in log, log
    assert launcher_command("mpirun -np {n_tasks} --bind-to none", 3) == ["mpirun", "-np", "3", "--bind-to", "none"]


def test_launcher_refusal_names_config_key(tmp_path):
    exe = _script(tmp_path / "fake_pinocchio", "exit 0\n")
    refusing = _script(tmp_path / "refusing_mpirun",
                       "echo 'mpirun has detected an attempt to run as root.'\necho 'Running as root'\nexit 1\n")
    (tmp_path / "p").write_text("RunFlag x\n")
    with pytest.raises(PinocchioError, match="pinocchio.mpi_launcher.*--allow-run-as-root"):
        run_pinocchio(tmp_path / "p", str(exe), tmp_path / "log", mpi_launcher=f"{refusing} -np {{n_tasks}}")


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no MPI launcher (mpirun) on PATH")
def test_default_launcher_runs_with_real_mpirun(tmp_path):
    """The default template through a real ``mpirun`` (as root too: see launcher_environment)."""
    exe = _script(tmp_path / "fake_pinocchio", 'echo "rank ${OMPI_COMM_WORLD_RANK:-?} read $1"\n')
    (tmp_path / "p").write_text("RunFlag x\n")
    run_pinocchio(tmp_path / "p", str(exe), tmp_path / "log", n_tasks=1, timeout_s=60)
    assert f"read {tmp_path / 'p'}" in (tmp_path / "log").read_text()
