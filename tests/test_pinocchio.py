"""Pinocchio backend: writers vs real V5.1 parameter files, readers vs real outputs' reference values."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from clustersbi.cosmology import Cosmology
from clustersbi.fof import HALO_COLUMNS
from clustersbi.pinocchio import (
    CATALOGUE_RECORD_DTYPES,
    PinocchioError,
    check_executable,
    pinocchio_parameters,
    read_catalogue,
    read_catalogue_binary,
    read_parameter_file,
    read_plc,
    run_pinocchio,
    write_output_list,
    write_parameter_file,
    write_power_table,
)

TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "pinocchio"
needs_data = pytest.mark.skipif(not TESTDATA.is_dir(), reason="Pinocchio sample outputs not available")
MASS_RTOL = 1e-6  # ASCII rows are printed to 7 significant digits
SUM_RTOL = 1e-4  # README sums are quoted to 5 digits
POS_ATOL_MPC_H = 0.006  # ASCII positions printed to 0.01
COSMO = Cosmology(Omega_m=0.3071, sigma_8=0.8224, h=0.6803, n_s=0.96641, Omega_b=0.048446)


def _params(**kw):
    return pinocchio_parameters(COSMO, run_flag="testascii", box_mpc_h=256, grid_size=64, seed=12345,
                                power_file="pk_planck18_z0.txt", catalogue_in_ascii=True, **kw)


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


@needs_data
@pytest.mark.parametrize("fmt", ["ascii", "binary"])
def test_catalogue_reference_values(fmt):
    refs = {
        0.1: dict(n=1071, n_big=428, sum_big=9.1427e16, top_mass=1.183752e15, top_pos=(99.04, 139.35, 23.88), top_np=217),
        0.5: dict(n=736, n_big=233, sum_big=4.3122e16, top_mass=7.964414e14, top_pos=(99.09, 139.95, 23.97), top_np=146),
    }
    for z, ref in refs.items():
        cat = read_catalogue(TESTDATA / f"pinocchio.{z:.4f}.test{fmt}.catalog.out")
        assert list(cat.columns[: len(HALO_COLUMNS)]) == list(HALO_COLUMNS)
        assert len(cat) == ref["n"], f"z={z} {fmt}: {len(cat)} halos"
        big = cat["mass_msun_h"] > 1e14
        assert big.sum() == ref["n_big"], f"z={z} {fmt}: {big.sum()} halos above 1e14"
        assert cat.loc[big, "mass_msun_h"].sum() == pytest.approx(ref["sum_big"], rel=SUM_RTOL)
        top = cat.iloc[0]
        assert top["id"] == 104708 and top["n_part"] == ref["top_np"], (top["id"], top["n_part"])
        assert top["mass_msun_h"] == pytest.approx(ref["top_mass"], rel=MASS_RTOL)
        np.testing.assert_allclose(top[["x", "y", "z"]].to_numpy(float), ref["top_pos"], atol=POS_ATOL_MPC_H)


@needs_data
def test_ascii_and_binary_catalogues_agree():
    a = read_catalogue(TESTDATA / "pinocchio.0.1000.testascii.catalog.out").sort_values("id")
    b = read_catalogue(TESTDATA / "pinocchio.0.1000.testbinary.catalog.out").sort_values("id")
    np.testing.assert_array_equal(a["id"].to_numpy(), b["id"].to_numpy())
    np.testing.assert_allclose(a["mass_msun_h"], b["mass_msun_h"], rtol=MASS_RTOL)
    for col in ("x", "y", "z", "qx"):
        np.testing.assert_allclose(a[col], b[col], atol=POS_ATOL_MPC_H, err_msg=col)


@needs_data
@pytest.mark.parametrize("name", ["pinocchio.testplc.plc.out", "pinocchio.testplcbin.plc.out"])
def test_light_cone_reference_values(name):
    plc = read_plc(TESTDATA / name)
    assert len(plc) == 976
    assert plc["redshift_true"].min() == pytest.approx(0.0544, abs=1e-4)
    assert plc["redshift_true"].max() == pytest.approx(0.4998, abs=1e-4)
    assert 85.0 - 1e-3 < plc["theta_deg"].min() and plc["theta_deg"].max() < 89.9 + 1e-3
    top = plc.iloc[0]
    assert top["id"] == 46430 and top["mass_msun_h"] == pytest.approx(8.946328e14, rel=MASS_RTOL)
    assert top["redshift_true"] == pytest.approx(0.205525, abs=1e-6)
    assert top["redshift_obs"] == pytest.approx(0.204753, abs=1e-6)


def _write_binary_catalogue(path: Path, recsize: int, tasks: list[np.ndarray]) -> None:
    """Exactly the documented layout: header 8|ntasks|recsize|8, per task 4|n|4 and the record block."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("=iiii", 8, len(tasks), recsize, 8))
        for rec in tasks:
            fh.write(struct.pack("=iii", 4, len(rec), 4))
            if len(rec):
                fh.write(struct.pack("=i", len(rec) * recsize) + rec.tobytes() + struct.pack("=i", len(rec) * recsize))


@pytest.mark.parametrize("recsize", [56, 48, 96])
def test_binary_layouts_round_trip(tmp_path, recsize):
    dtype = CATALOGUE_RECORD_DTYPES[recsize]
    rng = np.random.default_rng(recsize)
    tasks = []
    for n in (3, 0, 5):  # an empty task block too
        rec = np.zeros(n, dtype=dtype)
        rec["id"] = rng.integers(0, 2**40, n)
        rec["mass"] = rng.uniform(1e13, 1e15, n)
        rec["pos"], rec["vel"], rec["q"] = (rng.uniform(0, 100, (n, 3)) for _ in range(3))
        if "npart" in dtype.names:
            rec["npart"] = rng.integers(10, 1000, n)
        tasks.append(rec)
    _write_binary_catalogue(tmp_path / "cat.out", recsize, tasks)
    cat = read_catalogue_binary(tmp_path / "cat.out").sort_values("id")
    allrec = np.sort(np.concatenate(tasks), order="id")
    np.testing.assert_array_equal(cat["id"].to_numpy(), allrec["id"].astype(np.int64))
    np.testing.assert_allclose(cat["mass_msun_h"], allrec["mass"].astype(float))
    np.testing.assert_allclose(cat[["x", "y", "z"]].to_numpy(), allrec["pos"].astype(float))
    np.testing.assert_allclose(cat[["qx", "qy", "qz"]].to_numpy(), allrec["q"].astype(float))
    expected_np = allrec["npart"] if "npart" in dtype.names else np.full(len(allrec), -1)
    np.testing.assert_array_equal(cat["n_part"].to_numpy(), expected_np)


def test_binary_unknown_record_size_rejected(tmp_path):
    _write_binary_catalogue(tmp_path / "bad.out", 60, [])
    with pytest.raises(PinocchioError, match="record size 60"):
        read_catalogue_binary(tmp_path / "bad.out")


def test_check_executable_names_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="pinocchio.executable"):
        check_executable({"pinocchio": {"executable": str(tmp_path / "missing"), "mpi_launcher": ""}})
    with pytest.raises(FileNotFoundError, match="pinocchio.executable"):
        check_executable({})
    exe = tmp_path / "fake_pinocchio"
    exe.write_text("#!/bin/sh\necho running $1; exit 3\n")
    exe.chmod(0o755)
    with pytest.raises(FileNotFoundError, match="pinocchio.mpi_launcher"):
        check_executable({"pinocchio": {"executable": str(exe), "mpi_launcher": "no-such-mpirun -np {n_tasks}"}})
    assert check_executable({"pinocchio": {"executable": str(exe), "mpi_launcher": ""}})["executable"] == str(exe)
    # a failing run reports its status and the end of its log
    (tmp_path / "p").write_text("RunFlag x\n")
    with pytest.raises(PinocchioError, match="status 3"):
        run_pinocchio(tmp_path / "p", str(exe), tmp_path / "log", mpi_launcher="")
    assert "running" in (tmp_path / "log").read_text()
