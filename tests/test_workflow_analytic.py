"""The analytic XOD chain of the workflow, run by Snakemake on tests/config/tiny_analytic.yaml.

Design -> emission table -> sigma table -> mock XODs -> gather -> compress -> NPE -> calibration,
Fisher, exact posteriors, NPE against exact. Checks the content against references computed
here: the design table; lambda(theta) recomputed from the run's sigma and emission tables with
the parameters mapped by hand (L_0 -> l0, the schema's fiducial for the rest); the mocks'
Poisson statistics against that lambda; the exact posteriors' truths and box; the comparison
table's size.
"""

from __future__ import annotations

import copy
import json
from collections import Counter

import h5py
import numpy as np
import pandas as pd
import pytest

from clustersbi import analytic as an
from clustersbi.config import load_yaml, validate_config
from clustersbi.design import DesignSpec, design_table
from workflow_runs import dry_run_jobs, snakemake

pytestmark = pytest.mark.slow

TARGETS = (
    "results/training/xod.h5",
    "results/plots/xod_slices.png",
    "results/analytic/fisher.json",
    "results/plots/analytic_fisher.png",
    "results/analytic/exact_posteriors.h5",
    "results/analytic/npe_vs_exact.csv",
    "results/analytic/npe_vs_exact.json",
    "results/plots/analytic_npe_vs_exact.png",
    "results/inference/xod/calibration.json",
    "results/plots/inference/xod_expected_coverage.png",
    "results/plots/inference/xod_lc2st.png",
)
#: stored lambda vs lambda recomputed here from the same tables (float64 all the way)
LAMBDA_RTOL = 1e-9
#: Poisson statistics of the mocks: chi^2 / dof within this many standard deviations of 1
CHI2_N_SIGMA = 5.0
PNG_MAGIC = b"\x89PNG"


@pytest.fixture(scope="module")
def tiny(repo):
    return validate_config(load_yaml(repo / "tests" / "config" / "tiny_analytic.yaml"),
                           repo / "workflow" / "schemas" / "config.schema.yaml")



@pytest.fixture(scope="module")
def run(repo, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_analytic_run")
    proc = snakemake(repo, workdir, repo / "tests" / "config" / "tiny_analytic.yaml", *TARGETS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir


def planned_jobs(repo, workdir, config: dict, name: str) -> Counter:
    """Jobs per rule that a dry run of TARGETS with ``config`` plans against the finished run."""
    return dry_run_jobs(repo, workdir, config, name, *TARGETS)


def _model_from_run(run, tiny) -> an.AnalyticXodModel:
    """The analytic model rebuilt from the run's sigma and emission tables and the tiny config."""
    from clustersbi.products import read_emission_table
    from clustersbi.xod import XodBins
    from clustersbi.xray import make_backend

    with h5py.File(run / "results" / "analytic" / "sigma_table.h5", "r") as f:
        sig = an.SigmaTable(*(f[k][()] for k in ("omega_m", "ln_mass", "ln_sigma", "dlnsigma_dlnm")),
                            cosmology=an.Cosmology(**{k: tiny["cosmology"]["fiducial"][k] for k in ("h", "n_s", "Omega_b")}))
    table = read_emission_table(run / "results" / "xray" / "emission_table.h5")
    band = an.band_luminosity(make_backend("bremsstrahlung"), table.kt_kev, tuple(tiny["analytic"]["lt_band_kev"]))
    q = tiny["analytic"]["quadrature"]
    quad = an.xod_quadrature(XodBins.from_spec(tiny["xod"]["bins"]), table, band, tiny["detection"]["cr_cut_cts_s"],
                             kt_range_kev=(q["kt_min_kev"], q["kt_max_kev"]), n_z_nodes=q["n_z_nodes"], n_t_nodes=q["n_t_nodes"])
    return an.AnalyticXodModel(quad, sig, n_hermite=q["n_hermite"])


def test_training_set_is_the_design(run, tiny):
    from clustersbi.compress.data import load_training_set

    ts = load_training_set(run / "results" / "training" / "xod.h5")
    table = design_table(DesignSpec.from_config(tiny))
    names = [p["name"] for p in tiny["priors"]["cosmology"] + tiny["priors"]["astrophysics"]]
    assert ts.param_names == names
    np.testing.assert_allclose(ts.theta, table[names].to_numpy(), rtol=1e-12)
    assert list(ts.split) == list(table["split"])
    b = tiny["xod"]["bins"]
    assert ts.x.shape == (len(table), b["log_cr"]["n"], b["hr"]["n"], b["z"]["n"])


def test_mocks_are_poisson_draws_of_the_analytic_lambda(run, tiny):
    """Stored lambda = lambda recomputed here at the design points (names mapped by hand, the
    schema's fiducial for the fixed parameters); the mocks scatter about it as Poisson counts."""
    model = _model_from_run(run, tiny)
    fid = tiny["cosmology"]["fiducial"]
    base = an.XxlParameters(omega_m=fid["Omega_m"], sigma_8=fid["sigma_8"], **tiny["analytic"]["fiducial"])
    theta, stored, counts = [], [], []
    for path in sorted((run / "results" / "analytic" / "xod").glob("chunk_*.h5")):
        with h5py.File(path, "r") as f:
            assert "marginal" in f.attrs and "log_cr_edges" in f.attrs, dict(f.attrs)
            for sim in sorted(f):
                g = f[sim]
                theta.append(json.loads(g.attrs["theta"]) if isinstance(g.attrs["theta"], str) else list(g.attrs["theta"]))
                stored.append(g["expected"][()])
                counts.append(g["xod"][()])
                np.testing.assert_array_equal(g["x"][()], g["xod"][()])  # marginal "none"
                assert int(g.attrs["n_clusters"]) == int(g["xod"][()].sum())
    theta, stored, counts = np.array(theta), np.array(stored), np.array(counts)
    # Omega_m, sigma_8, L_0 (an alias of l0)
    ours = an.expected_xods(model, tiny["analytic"]["area_deg2"], theta, names=("omega_m", "sigma_8", "l0"), base=base)
    np.testing.assert_allclose(stored, ours, rtol=LAMBDA_RTOL, err_msg="stored lambda differs from lambda(theta) recomputed here")
    keep = stored > 1.0
    chi2 = float(np.sum((counts[keep] - stored[keep]) ** 2 / stored[keep]))
    dof = int(keep.sum())
    assert abs(chi2 / dof - 1.0) < CHI2_N_SIGMA * np.sqrt(2.0 / dof), f"chi^2/dof of the mocks {chi2 / dof:.3f} over {dof} bins"
    totals, expected = counts.sum(axis=(1, 2, 3)), stored.sum(axis=(1, 2, 3))
    pulls = (totals - expected) / np.sqrt(expected)
    assert np.all(np.abs(pulls) < 5.0), f"mock totals vs lambda: worst pull {pulls[np.argmax(np.abs(pulls))]:.2f}"
    assert expected.min() > 50, f"tiny XODs hold only {expected.min():.1f} clusters"


def test_fisher_forecast_is_finite(run, tiny):
    data = json.loads((run / "results" / "analytic" / "fisher.json").read_text())
    assert data["names"] == ["Omega_m", "sigma_8", "L_0"] and data["fields"] == ["omega_m", "sigma_8", "l0"]
    assert np.all(np.asarray(data["eigenvalues"]) > 0), f"Fisher matrix not positive definite: {data['eigenvalues']}"
    for key in ("no_prior", "with_prior"):
        sigma = data[key]["sigma"]
        assert all(np.isfinite(v) and v > 0 for v in sigma.values()), f"{key}: sigma {sigma}"
        assert np.isfinite(data[key]["fom"]) and data[key]["fom"] > 0, f"{key}: FoM {data[key]['fom']}"
    for n in data["names"]:
        assert data["with_prior"]["sigma"][n] <= data["no_prior"]["sigma"][n] * (1 + 1e-12), f"a prior widened sigma({n})"
        assert data["no_prior"]["sigma_conditional"][n] <= data["no_prior"]["sigma"][n] * (1 + 1e-12), n


def test_exact_posteriors_sample_inside_the_box_around_their_truths(run, tiny):
    from clustersbi.compress.data import load_training_set
    from clustersbi.products import read_exact_posteriors

    exact = read_exact_posteriors(run / "results" / "analytic" / "exact_posteriors.h5")
    n = tiny["analytic"]["exact"]["n_posteriors"]
    assert len(exact["samples"]) == n and exact["theta"].shape == (n, 3)
    assert exact["param_names"] == ["Omega_m", "sigma_8", "ln_L_0"]
    ts = load_training_set(run / "results" / "training" / "xod.h5")
    assert np.all(ts.split[exact["row"]] == "test")
    truth = ts.theta[exact["row"]]
    np.testing.assert_allclose(exact["theta"], np.column_stack([truth[:, :2], np.log(truth[:, 2])]), rtol=1e-12)
    tau = exact["tau"]
    assert np.all(np.isfinite(tau)) and np.all(tau > 0), f"autocorrelation times {tau}"
    priors = tiny["priors"]["cosmology"] + tiny["priors"]["astrophysics"]
    lo = np.array([p["low"] for p in priors])
    hi = np.array([p["high"] for p in priors])
    lo[2], hi[2] = np.log(lo[2]), np.log(hi[2])
    for k, s in enumerate(exact["samples"]):
        assert s.shape[1] == 3 and s.shape[0] > 50, s.shape
        assert np.all((s > lo) & (s < hi)), f"XOD {k}: samples outside the prior box"
    # the posteriors are informative: their widths are a fraction of the prior's
    width = exact["std"] / ((hi - lo) / np.sqrt(12.0))
    assert np.median(width[:, :2]) < 0.8, f"median posterior sd / prior sd {np.median(width[:, :2], axis=0)}"


def test_npe_vs_exact_table(run, tiny):
    df = pd.read_csv(run / "results" / "analytic" / "npe_vs_exact.csv")
    n = tiny["analytic"]["exact"]["n_posteriors"]
    assert len(df) == 3 * n, f"{len(df)} rows for {n} XODs x 3 quantities"
    assert sorted(df["parameter"].unique()) == ["Omega_m", "S8", "sigma_8"]
    for col in ("abs_offset", "width_ratio", "sigma_exact", "sigma_npe"):
        assert np.all(np.isfinite(df[col])) and np.all(df[col] >= 0), col
    s8 = df[df["parameter"] == "S8"]["truth"].to_numpy()
    om = df[df["parameter"] == "Omega_m"]["truth"].to_numpy()
    sig = df[df["parameter"] == "sigma_8"]["truth"].to_numpy()
    np.testing.assert_allclose(s8, sig * np.sqrt(om / 0.3), rtol=1e-12)
    summary = json.loads((run / "results" / "analytic" / "npe_vs_exact.json").read_text())
    assert summary["n_xod"] == n and set(summary["per_parameter"]) == {"Omega_m", "sigma_8", "S8"}
    # the tiny config's two-member ensemble: each member against the exact posteriors too
    members = summary["members"]
    assert [m["name"] for m in members] == ["mdn(seed 0)", "mdn(seed 1)"], members
    assert abs(sum(m["weight"] for m in members) - 1.0) < 1e-9
    assert all(set(m["per_parameter"]) == {"Omega_m", "sigma_8", "S8"} for m in members)
    for path in ("results/plots/analytic_fisher.png", "results/plots/analytic_npe_vs_exact.png", "results/plots/xod_slices.png"):
        assert (run / path).read_bytes()[:4] == PNG_MAGIC, path


def test_calibration_has_expected_coverage_and_lc2st(run, tiny):
    cal = json.loads((run / "results" / "inference" / "xod" / "calibration.json").read_text())
    coverage = cal["expected_coverage"]
    assert coverage["n_samples"] == tiny["infer"]["diagnostics"]["expected_coverage"]["n_samples"]
    assert len(coverage["levels"]) == len(coverage["coverage"]) and coverage["coverage"][-1] == 1.0
    lc2st = cal["lc2st"]
    assert lc2st["observations"][0] == "observation" and len(lc2st["p_value"]) == len(lc2st["observations"]) <= 3
    assert all(0.0 <= p <= 1.0 for p in lc2st["p_value"]) and lc2st["n_null"] == 4
    assert len(cal["ensemble"]["weights"]) == 2
    for plot in ("expected_coverage", "lc2st"):
        assert (run / "results" / "plots" / "inference" / f"xod_{plot}.png").read_bytes()[:4] == PNG_MAGIC, plot


def test_reruns_follow_what_each_rule_reads(repo, run):
    """Dry runs against the finished chain: more MCMC steps rerun only the exact posteriors and
    the comparison; a finer quadrature reruns the model's users, not the sigma or emission table."""
    tiny = load_yaml(repo / "tests" / "config" / "tiny_analytic.yaml")
    steps = copy.deepcopy(tiny)
    steps["analytic"]["exact"]["n_steps"] = 200
    plan = planned_jobs(repo, run, steps, "steps.yaml")
    assert plan["exact_posterior_part"] == 2 and plan["npe_vs_exact"] == 1, f"the n_steps edit was not seen: {dict(plan)}"
    assert not any(plan[r] for r in ("analytic_mocks", "train_compressor", "train_npe", "analytic_fisher")), dict(plan)
    quad = copy.deepcopy(tiny)
    quad["analytic"]["quadrature"]["n_z_nodes"] = 2
    plan = planned_jobs(repo, run, quad, "quadrature.yaml")
    assert plan["analytic_mocks"] == 2 and plan["analytic_fisher"] == 1, f"the quadrature edit was not seen: {dict(plan)}"
    assert plan["analytic_sigma_table"] == 0 and plan["emission_table"] == 0, dict(plan)
    diag = copy.deepcopy(tiny)
    diag["infer"]["diagnostics"]["lc2st"]["n_null"] = 5
    plan = planned_jobs(repo, run, diag, "diagnostics.yaml")
    assert plan["evaluate_npe"] == 1 and plan["train_npe"] == 0, f"a diagnostics edit must not retrain the NPE: {dict(plan)}"
