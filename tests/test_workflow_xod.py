"""The LDL -> X-ray -> XOD chain of the workflow, run by Snakemake on tests/config/tiny_xod.yaml.

Checks the content of what the chain produced against references computed here: the design
table (theta, split), the summed map against the per-slab maps, the XOD against a direct
count of each simulation's catalogue rows inside the bins, the simulated-vs-analytic counts
against the XODs themselves; then, on the same run, the posterior of a survey catalogue
(``xod.observation.catalogue_csv``) written from the holdout mock's detections against the
posterior of that mock itself.
"""

from __future__ import annotations

import copy
from collections import Counter

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from clustersbi.compress.data import load_training_set
from clustersbi.config import load_yaml, validate_config
from clustersbi.design import DesignSpec, design_table
from workflow_runs import dry_run_jobs, snakemake
from workflow_runs import planned_jobs as planned_jobs_in

pytestmark = pytest.mark.slow

TARGETS = (
    "results/training/xod.h5",
    "results/training/xod_z.h5",
    "results/plots/xray_slab_map.png",
    "results/plots/xray_lightcone_map.png",
    "results/plots/xray_cr_hr_dndz.png",
    "results/plots/xod_slices.png",
    "results/analytic/simulated_vs_analytic.json",
    "results/plots/analytic_simulated_vs_analytic.png",
)
#: simulated / analytic total counts of the tiny run. Both count the clusters above the same CR
#: cut inside the same XOD bins on the same sky area, so a factor of ~10 either way would be a unit
#: error (area in deg^2 vs sr, h factors, a band missing from the count rate), not physics. The
#: paper's full-size run finds 1.4; the tiny run is expected low: its 16^3 LDL training box and
#: 1.5 Mpc/h cells in a 1 deg^2 lightcone to z = 0.3 resolve few of the groups near the 1e-4 c/s
#: cut that the Tinker08 mass function counts (measured 0.24 +- 0.05).
SIM_TO_ANALYTIC_RANGE = (0.05, 3.0)
#: the summed lightcone map vs the sum of its float32 slab maps
SUMMED_MAP_RTOL = 1e-5
#: the inference on the tiny chain: the holdout mock's posterior and its corner plot
INFER_TARGETS = ("results/inference/xod/samples.h5", "results/plots/inference/xod_corner.png")
#: a survey catalogue of the holdout mock vs the mock itself: same XOD (exactly), compressed
#: alone vs in the batch of every row (float32 network; batch-size-dependent kernels may
#: differ in the last bits) and its posterior samples (same seed)
OBSERVED_COMPRESSED_RTOL = 1e-5
OBSERVED_SAMPLES_ATOL = 1e-4
PNG_MAGIC = b"\x89PNG"


@pytest.fixture(scope="module")
def tiny_xod(repo):
    return validate_config(load_yaml(repo / "tests" / "config" / "tiny_xod.yaml"), repo / "workflow" / "schemas" / "config.schema.yaml")



@pytest.fixture(scope="module")
def xod_run(repo, tmp_path_factory):
    """The tiny XOD chain up to the XOD training set and the X-ray figures."""
    workdir = tmp_path_factory.mktemp("tiny_xod_run")
    proc = snakemake(repo, workdir, repo / "tests" / "config" / "tiny_xod.yaml", *TARGETS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir


def planned_jobs(repo, workdir, config: dict, name: str) -> Counter:
    """Jobs per rule that a dry run of TARGETS with ``config`` plans against the finished run."""
    return dry_run_jobs(repo, workdir, config, name, *TARGETS)


def in_bins(cat: pd.DataFrame, bins: dict) -> np.ndarray:
    """Rows inside every axis range (edges inclusive, as numpy.histogramdd's last bin)."""
    log_cr = np.log10(cat["CR"].to_numpy(float))
    ok = np.ones(len(cat), bool)
    for values, axis in ((log_cr, "log_cr"), (cat["HR"].to_numpy(float), "hr"), (cat["z"].to_numpy(float), "z")):
        ok &= (values >= bins[axis]["low"]) & (values <= bins[axis]["high"])
    return ok


def test_training_set_matches_design(xod_run, tiny_xod):
    from clustersbi.compress.data import load_training_set

    ts = load_training_set(xod_run / "results" / "training" / "xod.h5")
    table = design_table(DesignSpec.from_config(tiny_xod))
    names = [p["name"] for p in tiny_xod["priors"]["cosmology"] + tiny_xod["priors"]["astrophysics"]]
    assert ts.param_names == names
    np.testing.assert_allclose(ts.theta, table[names].to_numpy(), rtol=1e-12)
    assert list(ts.split) == list(table["split"])
    b = tiny_xod["xod"]["bins"]
    assert ts.x.shape == (len(table), b["log_cr"]["n"], b["hr"]["n"], b["z"]["n"])


def test_xod_counts_equal_catalogue_rows_in_range(xod_run, tiny_xod):
    from clustersbi.compress.data import load_training_set
    from clustersbi.detect import catalogue_from_h5

    ts = load_training_set(xod_run / "results" / "training" / "xod.h5")
    n_lc = tiny_xod["simulation"]["lightcone"]["n_lightcones"]
    counted = {}
    for path in sorted((xod_run / "results" / "xray" / "catalogs").glob("chunk_*.h5")):
        with h5py.File(path, "r") as f:
            for sim in f:
                lcs = sorted(f[sim])
                assert len(lcs) == n_lc, f"{path.name}/{sim}: {len(lcs)} lightcones, config says {n_lc}"
                cats = [catalogue_from_h5(f[sim][lc]) for lc in lcs]
                for cat in cats:
                    assert (cat["CR"] > tiny_xod["detection"]["cr_cut_cts_s"]).all(), cat["CR"].min()
                counted[int(sim[4:])] = int(sum(in_bins(c, tiny_xod["xod"]["bins"]).sum() for c in cats))
    got = ts.x.reshape(len(ts.x), -1).sum(axis=1)
    expected = np.array([counted[i] for i in range(len(ts.x))])
    np.testing.assert_array_equal(got, expected, err_msg=f"XOD totals {got} vs catalogue rows in range {expected}")
    assert expected.sum() > 0, "no detection in range in the whole tiny run"


def test_maps_per_slab_and_summed(xod_run, tiny_xod):
    lc_cfg = tiny_xod["simulation"]["lightcone"]
    with h5py.File(xod_run / "results" / "xray" / "maps" / "chunk_00000.h5", "r") as f:
        n_pix = int(f.attrs["n_pix"])
        assert n_pix == round(np.sqrt(lc_cfg["fov_deg2"]) * 60 / tiny_xod["xray"]["pixel_arcmin"])
        g = f["sim_000000/lc_00"]
        rates, summed = g["rate_cts_s"][()].astype(float), g["summed_cts_s"][()].astype(float)
        assert rates.shape == (lc_cfg["n_slabs"], 2, n_pix, n_pix)
        assert np.all(np.diff(g["z_lo"][()]) > 0) and g["z_lo"][0] == pytest.approx(lc_cfg["z_min"], abs=1e-3)
    np.testing.assert_allclose(rates.sum(axis=0), summed, rtol=SUMMED_MAP_RTOL, atol=1e-12)
    assert summed.sum() > 0 and np.all(np.isfinite(summed))


def test_table3_statistic_is_the_marginal_of_the_xod(xod_run):
    """gather_xod's {statistic} wildcard: the z marginal holds the 3D XODs summed over CR and HR."""
    full, dndz = (load_training_set(xod_run / "results" / "training" / f"{s}.h5") for s in ("xod", "xod_z"))
    np.testing.assert_array_equal(dndz.x, full.x.sum(axis=(1, 2)))
    np.testing.assert_array_equal(dndz.theta, full.theta)


def test_xray_figures_written(xod_run):
    for target in [t for t in TARGETS if t.endswith(".png")]:
        path = xod_run / target
        assert path.read_bytes()[:4] == PNG_MAGIC, f"{target} is not a PNG"
        assert path.stat().st_size > 5000, f"{target}: {path.stat().st_size} bytes"


def test_simulated_counts_against_the_analytic_model(xod_run, tiny_xod):
    import json

    out = json.loads((xod_run / "results" / "analytic" / "simulated_vs_analytic.json").read_text())
    ts = load_training_set(xod_run / "results" / "training" / "xod.h5")
    lc = tiny_xod["simulation"]["lightcone"]
    assert out["n_xods"] == len(ts.x) and out["area_deg2"] == pytest.approx(lc["fov_deg2"] * lc["n_lightcones"])
    # the simulated side is the XODs' own counts per z bin
    np.testing.assert_array_equal(out["simulated_per_z"], ts.x.sum(axis=(0, 1, 2)))
    assert out["simulated_total"] == ts.x.sum()
    analytic = np.asarray(out["analytic_per_z"])
    assert np.all(np.isfinite(analytic)) and np.all(analytic > 0), f"analytic counts per z bin {analytic}"
    assert out["analytic_total"] == pytest.approx(sum(r["analytic"] for r in out["per_xod"]), rel=1e-9)
    ratio = out["ratio_of_totals"]
    print(f"\ntiny run: {out['simulated_total']:.0f} simulated vs {out['analytic_total']:.1f} analytic clusters, "
          f"ratio {ratio:.3f} +- {out['ratio_of_totals_error']:.3f}")
    lo, hi = SIM_TO_ANALYTIC_RANGE
    assert lo < ratio < hi, f"simulated / analytic total {ratio:.3f} outside [{lo}, {hi}]"


def test_reruns_follow_what_each_stage_reads(repo, xod_run):
    """Dry runs against the finished chain: xod.bins reaches only the binning (and the figure
    drawing the bins), not the lightcones; a new field of view reruns the lightcones but not
    the LDL training boxes (train_ldl's params exclude it)."""
    tiny = load_yaml(repo / "tests" / "config" / "tiny_xod.yaml")
    simulations = ("simulate_lightcone", "paint_gas", "xray_maps", "detect_sources", "train_ldl")
    bins = copy.deepcopy(tiny)
    bins["xod"]["bins"]["hr"]["n"] = 3
    plan = planned_jobs(repo, xod_run, bins, "bins.yaml")
    # one gather per XOD statistic among the targets (xod, xod_z)
    assert plan["bin_xod"] == 2 and plan["gather_xod"] == 2, f"the bins edit was not seen: {dict(plan)}"
    assert not any(plan[r] for r in simulations), f"an xod.bins edit reruns upstream stages: {dict(plan)}"
    assert plan["simulated_vs_analytic"] == 1 and plan["analytic_sigma_table"] == 0 and plan["emission_table"] == 0, \
        f"an xod.bins edit must redo the analytic comparison, not its tables: {dict(plan)}"
    fov = copy.deepcopy(tiny)
    fov["simulation"]["lightcone"]["fov_deg2"] = 2.0
    plan = planned_jobs(repo, xod_run, fov, "fov.yaml")
    assert plan["simulate_lightcone"] == 2, f"a field-of-view edit must rerun the lightcones: {dict(plan)}"
    assert plan["train_ldl"] == 0, f"a field-of-view edit retrains the LDL boxes: {dict(plan)}"
    fused = copy.deepcopy(tiny)
    fused["simulation"]["lightcone"]["forward"] = "fused"
    plan = planned_jobs(repo, xod_run, fused, "fused.yaml")
    assert plan["fused_xray_maps"] == 2, f"forward: fused must remake the maps: {dict(plan)}"
    assert not any(plan[r] for r in (*simulations[:3], "train_ldl", "emission_table", "linear_power")), \
        f"forward: fused reruns more than the maps and what reads them: {dict(plan)}"


def test_fused_forward_plans_one_maps_job_per_chunk_and_no_particles(repo, tmp_path):
    """simulation.lightcone.forward: fused: the maps of each chunk come from one job that reads the
    linear power, the LDL models and the emission table; no particle or gas file is planned."""
    config = load_yaml(repo / "tests" / "config" / "tiny_xod.yaml")
    config["simulation"]["lightcone"]["forward"] = "fused"
    plan = dry_run_jobs(repo, tmp_path, config, "tiny_xod_fused.yaml", *TARGETS)
    assert plan["fused_xray_maps"] == 2 and plan["detect_sources"] == 2, dict(plan)
    assert plan["linear_power"] == 2 and plan["train_ldl"] == 1 and plan["emission_table"] == 1, dict(plan)
    assert not any(plan[r] for r in ("simulate_lightcone", "paint_gas", "xray_maps")), dict(plan)


@pytest.fixture(scope="module")
def holdout_and_catalogue_runs(repo, xod_run, tiny_xod):
    """On the finished chain: the posterior of the holdout mock (infer.observation kind holdout),
    then with xod.observation.catalogue_csv a CSV of that mock's detections (per-band count
    rates and z only: CR and HR are formed by the loader). Returns the workdir, the holdout's
    index and the two runs' observation samples."""
    from clustersbi.compress.data import load_training_set
    from clustersbi.detect import catalogue_from_h5

    proc = snakemake(repo, xod_run, repo / "tests" / "config" / "tiny_xod.yaml", *INFER_TARGETS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with h5py.File(xod_run / INFER_TARGETS[0], "r") as f:
        holdout_samples = f["observation_samples"][()]
        assert "holdout" in f.attrs["observation"], f.attrs["observation"]
    ts = load_training_set(xod_run / "results" / "training" / "xod.h5")
    with h5py.File(xod_run / "results" / "training" / "xod.h5", "r") as f:
        index = int(f["index"][np.flatnonzero(ts.mask("holdout"))[0]])
    cats = []
    for path in sorted((xod_run / "results" / "xray" / "catalogs").glob("chunk_*.h5")):
        with h5py.File(path, "r") as f:
            if f"sim_{index:06d}" in f:
                sim = f[f"sim_{index:06d}"]
                cats += [catalogue_from_h5(sim[lc]) for lc in sorted(sim)]
    survey = pd.concat(cats, ignore_index=True)
    assert len(survey) > 0, f"the holdout mock {index} has no detection"
    bands = [c for c in survey.columns if c.startswith("CR_")]
    survey[[*bands, "z", "ra_deg", "dec_deg"]].to_csv(xod_run / "survey.csv", index=False)
    config = load_yaml(repo / "tests" / "config" / "tiny_xod.yaml")
    config["xod"]["observation"] = {"catalogue_csv": str(xod_run / "survey.csv")}
    configfile = xod_run / "survey.yaml"
    configfile.write_text(yaml.safe_dump(config))
    proc = snakemake(repo, xod_run, configfile, *INFER_TARGETS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    planned = planned_jobs_in(proc.stdout + proc.stderr)
    with h5py.File(xod_run / INFER_TARGETS[0], "r") as f:
        catalogue_samples = f["observation_samples"][()]
        description = str(f.attrs["observation"])
    return xod_run, index, holdout_samples, catalogue_samples, description, planned


def test_survey_catalogue_posterior_equals_its_mocks(holdout_and_catalogue_runs, tiny_xod):
    workdir, index, holdout_samples, catalogue_samples, description, planned = holdout_and_catalogue_runs
    # only the observation's jobs reran: the networks are the holdout run's
    assert planned["train_compressor"] == 0 and planned["train_npe"] == 0, dict(planned)
    assert planned["observed_xod"] == 1 and planned["compress_observation"] == 1 and planned["evaluate_npe"] == 1, dict(planned)
    assert "compressed/xod.h5" in description, description
    # the catalogue's XOD is the mock's, bin for bin
    with h5py.File(workdir / "results" / "observation" / "xod.h5", "r") as f:
        observed_xod = f["xod"][()]
    for path in sorted((workdir / "results" / "xod").glob("chunk_*.h5")):
        with h5py.File(path, "r") as f:
            if f"sim_{index:06d}" in f:
                mock_xod = f[f"sim_{index:06d}/xod"][()]
    np.testing.assert_array_equal(observed_xod, mock_xod)
    assert mock_xod.sum() > 0, "the holdout mock has no detection in the XOD range"
    # compressed alone, the catalogue gives the mock's compressed summary
    from clustersbi.compress.data import load_training_set

    compressed = load_training_set(workdir / "results" / "compressed" / "xod.h5")
    with h5py.File(workdir / "results" / "training" / "xod.h5", "r") as f:
        row = list(f["index"][()]).index(index)
    with h5py.File(workdir / "results" / "observation" / "compressed" / "xod.h5", "r") as f:
        observed = f["x"][()]
    np.testing.assert_allclose(observed, compressed.x[row], rtol=OBSERVED_COMPRESSED_RTOL, atol=1e-7)
    # and the posterior samples of the holdout mock (same seed)
    assert catalogue_samples.shape == holdout_samples.shape
    diff = float(np.abs(catalogue_samples.astype(float) - holdout_samples).max())
    assert diff < OBSERVED_SAMPLES_ATOL, f"catalogue vs holdout posterior samples differ by up to {diff:.3g}"
    corner = workdir / INFER_TARGETS[1]
    assert corner.read_bytes()[:4] == PNG_MAGIC and corner.stat().st_mtime > (workdir / "survey.csv").stat().st_mtime
