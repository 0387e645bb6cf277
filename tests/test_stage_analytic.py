"""The analytic stage (clustersbi.stages.analytic) on tables and files written here.

References: clustersbi.analytic's own tested functions (xod_log_posterior, expected_xods, the
Poisson log-likelihood of summed counts), the xod stage's gather (the mocks must be in its
layout), and the design (seeds, records). The whole chain runs in test_workflow_analytic.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import h5py
import numpy as np
import pytest

from clustersbi import analytic as an
from clustersbi.compress.data import load_training_set
from clustersbi.config import load_schema, validate_config
from clustersbi.design import DesignSpec, Prior, SeedStream, chunk_design, derive_seed
from clustersbi.io import ChunkFile
from clustersbi.products import read_exact_posteriors
from clustersbi.stages import analytic as st
from clustersbi.stages.xod import gather_xod
from clustersbi.stages.xray import emission_table_file
from clustersbi.xod import xod_marginal

REPO = Path(__file__).resolve().parents[1]
LOGP_RTOL = 1e-12


def _prior(name, low, high, distribution="uniform"):
    return {"name": name, "label": name, "distribution": distribution, "low": low, "high": high}


def analytic_config(**overrides) -> dict:
    """A small, schema-filled analytic config (4 x 4 x 4 XOD, coarse quadrature and tables)."""
    config = {
        "analysis": "analytic",
        "design": {"n_simulations": 12, "chunk_size": 6,
                   "splits": {"train": 0.4, "val": 0.1, "test": 0.3, "holdout": 0.0, "npe": 0.15, "npe_val": 0.05}},
        "priors": {"cosmology": [_prior("Omega_m", 0.25, 0.35), _prior("sigma_8", 0.75, 0.85)],
                   "astrophysics": [_prior("L_0", 0.6, 0.85, "loguniform")]},
        "cosmology": {},
        "xray": {"table": {"n_kt": 20, "dz": 0.05}},
        "xod": {"bins": {"log_cr": {"n": 4}, "hr": {"n": 4}, "z": {"n": 4}}},
        "analytic": {"sigma_table": {"omega_m_step": 0.05, "n_mass": 80, "points_per_decade": 40},
                     "quadrature": {"n_z_nodes": 1, "n_t_nodes": 2, "n_hermite": 6, "kt_min_kev": 0.3, "kt_max_kev": 20.0}},
    }
    for key, value in overrides.items():
        config[key] = value
    return validate_config(config, load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml"))


def model_cfg(config) -> dict:
    """The rule params of rules/common.smk analytic_model()."""
    return {"xod": {"bins": config["xod"]["bins"], "marginal": config["xod"]["marginal"]},
            "cr_cut_cts_s": config["detection"]["cr_cut_cts_s"], "quadrature": config["analytic"]["quadrature"],
            "lt_band_kev": config["analytic"]["lt_band_kev"]}


def fiducial(config) -> dict:
    """The rule params of rules/common.smk analytic_fiducial()."""
    cosmo = config["cosmology"]["fiducial"]
    return {"Omega_m": cosmo["Omega_m"], "sigma_8": cosmo["sigma_8"], **config["analytic"]["fiducial"]}


@pytest.fixture(scope="module")
def config():
    return analytic_config()


@pytest.fixture(scope="module")
def tables(config, tmp_path_factory):
    """(sigma table file, emission table file) of the small config."""
    out = tmp_path_factory.mktemp("analytic_tables")
    st.sigma_table_stage(config["cosmology"]["fiducial"], [0.25, 0.35], config["analytic"]["sigma_table"], out / "sigma.h5")
    emission_table_file(config["xray"], 0.5, out / "emission.h5")
    return out / "sigma.h5", out / "emission.h5"


@pytest.fixture(scope="module")
def model(config, tables):
    return st.build_model(*tables, model_cfg(config))[0]


# ----------------------------------------------------------------------------- names and checks
def test_prior_names_map_onto_xxl_fields():
    assert st.xxl_field("Omega_m") == "omega_m" and st.xxl_field("sigma_8") == "sigma_8"
    assert st.xxl_field("L_0") == "l0" and st.xxl_field("l0") == "l0" and st.xxl_field("alpha_MT") == "alpha_mt"
    assert set(st.XXL_ALIASES.values()) <= set(an.XxlParameters._fields)
    with pytest.raises(ValueError, match="A_SN1"):
        st.xxl_field("A_SN1")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["priors"]["cosmology"].append(_prior("h", 0.6, 0.8)), r"priors.cosmology\[2\].name"),
        (lambda c: c["priors"]["astrophysics"].append(_prior("A_SN1", 0.5, 2.0)), r"priors.astrophysics\[1\].name"),
        (lambda c: c["priors"]["astrophysics"].append(_prior("l0", 0.5, 2.0)), "named twice"),
        (lambda c: c["priors"]["astrophysics"].append(_prior("sigma_8x", 0.5, 2.0)), r"astrophysics\[1\]"),
        (lambda c: c["priors"]["cosmology"].pop(1), "Omega_m and sigma_8"),
        (lambda c: c["analytic"]["fisher"]["point"].update(A_SN1=1.0), "analytic.fisher.point.A_SN1"),
        (lambda c: c["analytic"]["quadrature"].update(kt_max_kev=100.0), "analytic.quadrature"),
    ],
)
def test_bad_analytic_configs_name_the_key(config, edit, match):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(ValueError, match=match):
        st.check_analytic_config(bad)


def test_the_shipped_analytic_configs_pass_the_checks(repo):
    from clustersbi.config import load_yaml

    schema = load_schema(repo / "workflow" / "schemas" / "config.schema.yaml")
    for name in ("config/analytic.yaml", "tests/config/tiny_analytic.yaml"):
        st.check_analytic_config(validate_config(load_yaml(repo / name), schema))


def test_omega_m_nodes_cover_the_prior_with_a_margin():
    nodes = st.omega_m_nodes([0.1, 0.5], 0.04, 0.048)
    np.testing.assert_allclose(nodes, an.OMEGA_M_NODES, atol=1e-12)
    narrow = st.omega_m_nodes([0.3, 0.3], 0.05, 0.048)
    assert narrow.size >= 4 and narrow[0] < 0.3 < narrow[-1], narrow
    low = st.omega_m_nodes([0.06, 0.3], 0.04, 0.048)
    assert low[0] > 0.048 and low[0] <= 0.06, low


def test_part_rows_split_the_posteriors_without_overlap():
    parts = [st.part_rows(23, 10, p) for p in range(3)]
    assert [list(range(23))[s] for s in parts] == [list(range(10)), list(range(10, 20)), list(range(20, 23))]
    with pytest.raises(ValueError, match="part 3"):
        st.part_rows(23, 10, 3)


# ----------------------------------------------------------------------------- mocks in the xod layout
def test_mocks_are_in_the_xod_layout_and_reproducible(config, tables, model, tmp_path):
    spec = DesignSpec.from_config(config)
    files = []
    for chunk in range(2):
        files.append(tmp_path / f"chunk_{chunk}.h5")
        st.analytic_mocks_chunk(*tables, chunk_design(spec, chunk, with_inner=False), config["seed"], model_cfg(config),
                                fiducial(config), 200.0, 4, files[-1])
    gather_xod(files, tmp_path / "training.h5")
    ts = load_training_set(tmp_path / "training.h5")
    assert ts.param_names == ["Omega_m", "sigma_8", "L_0"] and ts.x.shape == (12, 4, 4, 4)
    base = st.fiducial_parameters(fiducial(config))
    lam = an.expected_xods(model, 200.0, ts.theta, names=("omega_m", "sigma_8", "l0"), base=base)
    with ChunkFile.open(files[0]) as f:
        for attrs, g in f.simulations():
            i = int(attrs["index"])
            np.testing.assert_allclose(g["expected"][()], lam[i], rtol=1e-10)
            rng = np.random.default_rng(derive_seed(config["seed"], SeedStream.ANALYTIC_MOCK, i))
            np.testing.assert_array_equal(g["xod"][()], an.mock_xods(lam[i], rng))
            assert attrs["mock_seed"] == derive_seed(config["seed"], SeedStream.ANALYTIC_MOCK, i)
    again = tmp_path / "again.h5"
    st.analytic_mocks_chunk(*tables, chunk_design(spec, 0, with_inner=False), config["seed"], model_cfg(config),
                            fiducial(config), 200.0, 6, again)
    with h5py.File(files[0], "r") as a, h5py.File(again, "r") as b:
        for sim in a:
            np.testing.assert_array_equal(a[sim]["xod"][()], b[sim]["xod"][()])


# ----------------------------------------------------------------------------- exact likelihood
def test_log_posterior_is_the_analytic_modules_in_inference_coordinates(config, model):
    base = st.fiducial_parameters(fiducial(config))
    priors = [Prior.from_mapping(p) for p in config["priors"]["cosmology"] + config["priors"]["astrophysics"]]
    truth = np.array([0.3, 0.8, 0.71])
    with an.jax_float64():
        lam = np.asarray(an.xod_function(model)(an.params_from_vector(truth, ("omega_m", "sigma_8", "l0"), base), 200.0))
    observed = an.mock_xods(lam, np.random.default_rng(3))
    log_prob = st.log_posterior_function(model, 200.0, priors, base, n_batch=3)(observed)
    reference = an.xod_log_posterior(observed, model, 200.0, [p.low for p in priors], [p.high for p in priors],
                                     names=("omega_m", "sigma_8", "l0"), base=base)
    x = np.array([[0.3, 0.8, 0.71], [0.27, 0.83, 0.65], [0.33, 0.77, 0.8], [0.29, 0.81, 0.7], [0.2, 0.8, 0.7]])
    y = x.copy()
    y[:, 2] = np.log(x[:, 2])
    ours, ref = log_prob(y), reference(x)
    np.testing.assert_allclose(ours[:4], ref[:4], rtol=LOGP_RTOL)
    assert np.isneginf(ours[4]) and np.isneginf(ref[4]), "outside the box"
    # a marginal statistic: sums of Poisson counts are Poisson with the summed lambda
    marg = st.log_posterior_function(model, 200.0, priors, base, marginal="z")(xod_marginal(observed, "z"))
    with an.jax_float64():
        lam_y = np.asarray(an.xod_function(model)(an.params_from_vector(x[1], ("omega_m", "sigma_8", "l0"), base), 200.0))
        want = float(an.poisson_log_likelihood(xod_marginal(observed, "z"), xod_marginal(lam_y, "z")))
    assert abs(marg(y[1:2])[0] - want) < LOGP_RTOL * abs(want), f"marginal log L {marg(y[1:2])[0]} vs {want}"


def test_exact_posterior_parts_gather_in_order(config, tables, model, tmp_path):
    """Two parts of two XODs each (short chains), gathered: the same rows, truths and samples."""
    spec = DesignSpec.from_config(config)
    files = [tmp_path / f"chunk_{c}.h5" for c in range(2)]
    for c, path in enumerate(files):
        st.analytic_mocks_chunk(*tables, chunk_design(spec, c, with_inner=False), config["seed"], model_cfg(config),
                                fiducial(config), 200.0, 6, path)
    gather_xod(files, tmp_path / "training.h5")
    exact = {**config["analytic"]["exact"], "n_posteriors": 4, "xods_per_job": 2, "n_steps": 150, "walkers_per_dim": 3}
    parts = [tmp_path / f"part_{p}.h5" for p in range(2)]
    for p, path in enumerate(parts):
        st.exact_posteriors_part(tmp_path / "training.h5", *tables, model_cfg(config), fiducial(config), config["priors"],
                                 exact, 200.0, config["seed"], p, path)
    st.gather_exact_posteriors(parts, tmp_path / "exact.h5")
    out = read_exact_posteriors(tmp_path / "exact.h5")
    ts = load_training_set(tmp_path / "training.h5")
    test_rows = np.flatnonzero(ts.mask("test"))[:4]
    np.testing.assert_array_equal(out["row"], test_rows)
    assert out["param_names"] == ["Omega_m", "sigma_8", "ln_L_0"] and out["n_walkers"] == 9
    np.testing.assert_allclose(out["theta"][:, 2], np.log(ts.theta[test_rows, 2]), rtol=1e-12)
    for p, path in enumerate(parts):
        part = read_exact_posteriors(path)
        for k, s in enumerate(part["samples"]):
            np.testing.assert_array_equal(out["samples"][2 * p + k], s)
    assert np.all(np.isfinite(out["tau"])) and np.all(out["tau"] > 0), out["tau"]
    np.testing.assert_allclose(out["mean"], [s.mean(axis=0) for s in out["samples"]], rtol=1e-12)


def test_fisher_stage_matches_the_analytic_forecast(config, tables, model, tmp_path):
    import json

    st.fisher_stage(*tables, model_cfg(config), fiducial(config), config["priors"], {"point": {"L_0": 0.7}, "min_expected": 1e-10},
                    200.0, tmp_path / "fisher.json")
    data = json.loads((tmp_path / "fisher.json").read_text())
    point = st.fiducial_parameters(fiducial(config))._replace(l0=0.7)
    fields = ("omega_m", "sigma_8", "l0")
    fisher = an.fisher_matrix(lambda p: an.xod_function(model)(p, 200.0), point, fields)
    np.testing.assert_allclose(data["matrix"], fisher, rtol=1e-10)
    ref = an.fisher_forecast(fisher, fields)
    assert data["no_prior"]["sigma"]["L_0"] == pytest.approx(ref.sigma["l0"], rel=1e-10)
    assert data["point"] == {"Omega_m": point.omega_m, "sigma_8": point.sigma_8, "L_0": 0.7}
    # the log-uniform L_0 prior as a Gaussian: sd of ln L_0 mapped to L_0 at the point
    want = 0.7 * (np.log(0.85) - np.log(0.6)) / np.sqrt(12.0)
    assert data["prior_sigma"]["L_0"] == pytest.approx(want, rel=1e-12)
    assert data["with_prior"]["fom"] > data["no_prior"]["fom"] > 0
