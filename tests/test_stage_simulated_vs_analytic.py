"""The simulated XODs against the analytic model (clustersbi.stages.analytic.simulated_vs_analytic_stage).

Simulated XOD files are written here in the layout of rule ``bin_xod`` with counts that are a
known multiple of the analytic expectation at each simulation's own cosmology, so the stage's
per-bin sums and ratios have exact references (clustersbi.analytic.expected_xods, tested against
a brute Monte Carlo population in test_analytic.py). The whole chain runs in test_workflow_xod.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from clustersbi import analytic as an
from clustersbi.design import SimulationRecord
from clustersbi.io import ChunkFile
from clustersbi.plots.analytic import plot_simulated_vs_analytic
from clustersbi.stages import analytic as st
from clustersbi.stages.xray import emission_table_file
from clustersbi.xod import XodBins
from test_stage_analytic import analytic_config, fiducial, model_cfg

#: the simulated counts of the synthetic XODs, in units of the analytic expectation
EXCESS = 1.4
AREA_DEG2 = 50.0
RTOL = 1e-10
#: (Omega_m, sigma_8) of the synthetic simulations, inside the sigma table's nodes
POINTS = [(0.27, 0.78), (0.31, 0.82), (0.33, 0.76)]


@pytest.fixture(scope="module")
def config():
    return analytic_config()


@pytest.fixture(scope="module")
def tables(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("sim_vs_analytic_tables")
    st.sigma_table_stage(config["cosmology"]["fiducial"], [0.25, 0.35], config["analytic"]["sigma_table"], out / "sigma.h5")
    emission_table_file(config["xray"], 0.5, out / "emission.h5")
    return out / "sigma.h5", out / "emission.h5"


@pytest.fixture(scope="module")
def expected(config, tables):
    """lambda (n_points + 1, n_cr, n_hr, n_z) at POINTS and at the fiducial, for AREA_DEG2."""
    model, _ = st.build_model(*tables, model_cfg(config))
    base = st.fiducial_parameters(fiducial(config))
    vectors = np.array([*POINTS, (base.omega_m, base.sigma_8)])
    return an.expected_xods(model, AREA_DEG2, vectors, names=("omega_m", "sigma_8"), base=base, batch_size=2)


def write_simulated(path, config, expected, indices, bins_spec=None):
    """A ``bin_xod`` chunk file whose XODs are EXCESS x lambda of the simulations ``indices``."""
    bins = XodBins.from_spec(bins_spec or config["xod"]["bins"])
    with ChunkFile.create(path) as out:
        out.write_attrs({**bins.to_attrs(), "marginal": "none"})
        for i in indices:
            om, s8 = POINTS[i]
            record = SimulationRecord(i, 100 + i, "train", ("Omega_m", "sigma_8", "A_SN1"), (om, s8, 1.3))
            g = out.add_simulation(record, n_lightcones=2, n_detections=int(expected[i].sum()))
            g["xod"] = EXCESS * expected[i]
            g["x"] = EXCESS * expected[i]


def run(config, tables, files, tmp_path, **overrides):
    kwargs = dict(model_cfg=model_cfg(config), fiducial=fiducial(config), area_deg2=AREA_DEG2, z_range=(0.1, 0.5),
                  batch_size=2, out_file=tmp_path / "comparison.json")
    kwargs.update(overrides)
    return st.simulated_vs_analytic_stage(files, *tables, **kwargs)


def test_counts_per_z_and_ratios_against_the_analytic_expectation(config, tables, expected, tmp_path):
    files = [tmp_path / "chunk_0.h5", tmp_path / "chunk_1.h5"]
    write_simulated(files[0], config, expected, [2, 0])
    write_simulated(files[1], config, expected, [1])
    out = run(config, tables, files, tmp_path)
    written = json.loads((tmp_path / "comparison.json").read_text())
    assert set(written) == set(out) and written["ratio_of_totals"] == pytest.approx(out["ratio_of_totals"], rel=RTOL)
    per_z = expected[:3].sum(axis=(0, 1, 2))
    np.testing.assert_allclose(out["analytic_per_z"], per_z, rtol=RTOL)
    np.testing.assert_allclose(out["simulated_per_z"], EXCESS * per_z, rtol=RTOL)
    np.testing.assert_allclose(out["ratio_per_z"], EXCESS, rtol=RTOL)
    assert out["ratio_of_totals"] == pytest.approx(EXCESS, rel=RTOL)
    assert out["ratio_of_totals_error"] == pytest.approx(np.sqrt(EXCESS * per_z.sum()) / per_z.sum(), rel=RTOL)
    assert out["n_xods"] == 3 and out["total_area_deg2"] == pytest.approx(3 * AREA_DEG2)
    assert [r["index"] for r in out["per_xod"]] == [0, 1, 2], "XODs in index order"
    assert [(r["Omega_m"], r["sigma_8"]) for r in out["per_xod"]] == POINTS
    np.testing.assert_allclose(out["fiducial"]["analytic_per_z"], 3 * expected[3].sum(axis=(0, 1)), rtol=RTOL)
    plot_simulated_vs_analytic(tmp_path / "comparison.json", tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_bins_and_z_range_must_match_the_simulations(config, tables, expected, tmp_path):
    other = {**config["xod"]["bins"], "hr": {"low": 0.2, "high": 1.6, "n": 3}}
    write_simulated(tmp_path / "other.h5", config, expected, [0], bins_spec=other)
    with pytest.raises(ValueError, match="hr_edges"):
        run(config, tables, [tmp_path / "other.h5"], tmp_path)
    write_simulated(tmp_path / "ok.h5", config, expected, [0])
    with pytest.raises(ValueError, match="simulation.lightcone z range"):
        run(config, tables, [tmp_path / "ok.h5"], tmp_path, z_range=(0.1, 0.4))
