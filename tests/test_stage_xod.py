"""The xod stage (clustersbi.stages.xod) on catalogue files written here in the contract layout.

References: direct counting of the catalogue rows that fall in the bins; the design's records
for the training set's rows. The whole chain from gas to XOD is tested in test_stage_xray.py.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from clustersbi.compress.data import load_training_set
from clustersbi.config import load_schema, validate_config
from clustersbi.design import ChunkDesign, DesignSpec, Prior, SimulationRecord, chunk_design
from clustersbi.detect import catalogue_to_h5
from clustersbi.io import ChunkFile
from clustersbi.stages.xod import gather_xod, observed_xod, xod_chunk
from clustersbi.xod import XodBins, statistic_marginal, xod_marginal

REPO = Path(__file__).resolve().parents[1]
N_LIGHTCONES = 3


def schema_xod_params() -> dict:
    """The rule params of the xod stage (rules/common.smk xod_binning) with the schema's defaults."""
    config = {
        "analysis": "ldl",
        "design": {"n_simulations": 5, "chunk_size": 3},
        "priors": {"cosmology": [{"name": "Omega_m", "label": "x", "distribution": "uniform", "low": 0.1, "high": 0.5}]},
        "cosmology": {},
    }
    config = validate_config(config, load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return {"bins": config["xod"]["bins"], "marginal": config["xod"]["marginal"]}


XOD = schema_xod_params()
#: bins per axis of the XOD
N_BINS = {axis: int(XOD["bins"][axis]["n"]) for axis in ("log_cr", "hr", "z")}
XOD_SHAPE = (N_BINS["log_cr"], N_BINS["hr"], N_BINS["z"])


@pytest.fixture(scope="module")
def spec():
    return DesignSpec(
        outer=(Prior("Omega_m", r"\Omega_m", "uniform", 0.1, 0.5), Prior("sigma_8", r"\sigma_8", "uniform", 0.6, 1.0)),
        inner=(), n_simulations=5, n_inner=1, chunk_size=3, seed=9, split_fractions=(0.6, 0.2, 0.2, 0.0),
    )


def random_catalogue(rng, n):
    """Detections spread beyond the bins on every axis, so some fall outside."""
    return pd.DataFrame({"slab": rng.integers(0, 4, n), "CR": 10 ** rng.uniform(-2.2, 0.3, n),
                         "HR": rng.uniform(0.0, 2.0, n), "z": rng.uniform(0.05, 0.6, n)})


def count_in_range(cat: pd.DataFrame) -> int:
    b = XOD["bins"]
    lcr = np.log10(cat["CR"])
    return int(((lcr >= b["log_cr"]["low"]) & (lcr <= b["log_cr"]["high"]) & (cat["HR"] >= b["hr"]["low"])
                & (cat["HR"] <= b["hr"]["high"]) & (cat["z"] >= b["z"]["low"]) & (cat["z"] <= b["z"]["high"])).sum())


def write_catalogues(path, design_params, n_lightcones=N_LIGHTCONES, seed=0):
    """A catalogue file in the detect stage's layout; returns {index: [catalogue per lightcone]}."""
    rng = np.random.default_rng(seed)
    cats = {}
    with ChunkFile.create(path) as f:
        f.write_attrs({"pixel_arcmin": 1.0})
        # simulations written out of index order: readers must not depend on it
        for record in reversed(ChunkDesign.from_params(design_params).records):
            g_sim = f.add_simulation(record, omega_m=0.3, h=0.7)
            cats[record.index] = [random_catalogue(rng, 40 + 30 * light) for light in range(n_lightcones)]
            for light, cat in enumerate(cats[record.index]):
                catalogue_to_h5(ChunkFile.add_lightcone(g_sim, light), cat)
    return cats


@pytest.fixture(scope="module")
def chunks(tmp_path_factory, spec):
    """Two chunks' catalogues and XOD files."""
    d = tmp_path_factory.mktemp("xod")
    out = []
    for chunk in (0, 1):
        params = chunk_design(spec, chunk)
        cats = write_catalogues(d / f"catalogs_{chunk}.h5", params, seed=chunk)
        xod_chunk(d / f"catalogs_{chunk}.h5", XOD, d / f"xod_{chunk}.h5", n_lightcones=N_LIGHTCONES)
        out.append((params, cats, d / f"catalogs_{chunk}.h5", d / f"xod_{chunk}.h5"))
    return out


def test_xod_counts_equal_catalogue_rows_in_range(chunks):
    params, cats, _, xod_file = chunks[0]
    design = ChunkDesign.from_params(params)
    with ChunkFile.open(xod_file) as f:
        root = f.attrs
        assert root["marginal"] == "none"
        edges = XodBins.from_attrs(root)
        expected = XodBins.from_spec(XOD["bins"])
        for axis in ("log_cr", "hr", "z"):
            np.testing.assert_array_equal(getattr(edges, axis), getattr(expected, axis))
        found = list(f.simulations())
        assert [int(a["index"]) for a, _ in found] == design.indices
        for attrs, g in found:
            index = int(attrs["index"])
            assert SimulationRecord.from_attrs(attrs) == design.record(index)
            xod = g["xod"][()]
            assert xod.shape == XOD_SHAPE
            n_in = sum(count_in_range(c) for c in cats[index])
            assert 0 < n_in < sum(len(c) for c in cats[index]), "the catalogues should put some sources out of range"
            assert xod.sum() == n_in, f"simulation {index}: XOD holds {xod.sum()} sources, {n_in} catalogue rows in range"
            assert (attrs["n_lightcones"], attrs["n_detections"]) == (N_LIGHTCONES, sum(len(c) for c in cats[index]))
            np.testing.assert_array_equal(g["x"][()], xod)  # marginal 'none'


@pytest.mark.parametrize("marginal, axes", [("z", ("z",)), ("cr_hr", ("log_cr", "hr")), ("z_cr", ("z", "log_cr"))])
def test_marginal_statistic(chunks, tmp_path, marginal, axes):
    _, _, catalogs, xod_file = chunks[0]
    xod_chunk(catalogs, {**XOD, "marginal": marginal}, tmp_path / "xod.h5", n_lightcones=N_LIGHTCONES)
    with h5py.File(tmp_path / "xod.h5", "r") as f, h5py.File(xod_file, "r") as full:
        assert f.attrs["marginal"] == marginal
        x = f["sim_000001/x"][()]
        assert x.shape == tuple(N_BINS[a] for a in axes)
        np.testing.assert_array_equal(x, xod_marginal(full["sim_000001/xod"][()], marginal))


def test_lightcone_count_is_checked(chunks, tmp_path):
    _, _, catalogs, _ = chunks[0]
    with pytest.raises(ValueError, match=f"simulation 0 has {N_LIGHTCONES} lightcones, expected 2"):
        xod_chunk(catalogs, XOD, tmp_path / "bad.h5", n_lightcones=2)
    assert list(tmp_path.iterdir()) == []


def test_gather_orders_rows_by_index(chunks, spec, tmp_path):
    gather_xod([chunks[1][3], chunks[0][3]], tmp_path / "training" / "xod.h5")
    ts = load_training_set(tmp_path / "training" / "xod.h5")
    records = [r for chunk in (0, 1) for r in ChunkDesign.from_params(chunk_design(spec, chunk))]
    np.testing.assert_allclose(ts.theta, [r.values for r in records], rtol=1e-12)
    assert ts.param_names == ["Omega_m", "sigma_8"] and list(ts.split) == [r.split for r in records]
    assert ts.x.shape == (5, *XOD_SHAPE)
    with h5py.File(chunks[1][3], "r") as f:
        np.testing.assert_array_equal(ts.x[4], f["sim_000004/x"][()])
    with h5py.File(tmp_path / "training" / "xod.h5", "r") as f:
        assert f["index"][()].tolist() == [0, 1, 2, 3, 4] and "index" not in f.attrs
        assert f.attrs["marginal"] == "none"


@pytest.mark.parametrize("statistic, axes", [("xod_z", (0, 1)), ("xod_cr_hr", (2,))])
def test_gather_of_a_table3_statistic_sums_the_3d_xod(chunks, tmp_path, statistic, axes):
    marginal = statistic_marginal(statistic)
    gather_xod([chunks[0][3], chunks[1][3]], tmp_path / f"{statistic}.h5", marginal=marginal)
    ts = load_training_set(tmp_path / f"{statistic}.h5")
    with h5py.File(chunks[1][3], "r") as f:
        full = f["sim_000004/xod"][()]
    # independent of xod_marginal: the counts summed over the other axes
    np.testing.assert_array_equal(ts.x[4], full.sum(axis=axes))
    assert ts.x[4].sum() == full.sum() > 0
    with h5py.File(tmp_path / f"{statistic}.h5", "r") as f:
        assert f.attrs["marginal"] == marginal


def test_gather_rejects_chunks_binned_differently(chunks, tmp_path):
    _, _, catalogs, xod_file = chunks[1]
    xod_chunk(catalogs, {**XOD, "marginal": "z"}, tmp_path / "xod_z.h5", n_lightcones=N_LIGHTCONES)
    with pytest.raises(ValueError, match="bins or marginal differ"):
        gather_xod([chunks[0][3], tmp_path / "xod_z.h5"], tmp_path / "training.h5")
    assert not (tmp_path / "training.h5").exists()


def test_observed_catalogue_binned_like_simulations(chunks, tmp_path):
    _, cats, _, xod_file = chunks[0]
    csv = tmp_path / "survey.csv"
    pd.concat(cats[1])[["CR", "HR", "z"]].to_csv(csv, index=False)
    observed_xod(csv, XOD, tmp_path / "observation" / "xod.h5")
    with h5py.File(tmp_path / "observation" / "xod.h5", "r") as obs, h5py.File(xod_file, "r") as sim:
        assert obs["x"].shape == (1, *XOD_SHAPE)
        np.testing.assert_array_equal(obs["x"][()][0], sim["sim_000001/x"][()])
        assert obs.attrs["n_sources"] == sum(len(c) for c in cats[1])
        assert obs.attrs["n_in_range"] == sum(count_in_range(c) for c in cats[1])
