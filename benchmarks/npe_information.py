"""Where the analytic analysis loses information: compressor or NPE (issue 12, point 5).

Prints a table: for each variant of the compress -> NPE chain, the median over the exact
posteriors' test XODs of |mean_NPE - mean_exact| / sigma_exact and of sigma_NPE / sigma_exact
for Omega_m, sigma_8 and S8; the compressor's own error (median |estimate - exact posterior
mean| / sigma_exact of Omega_m and sigma_8: the NPE sees nothing else, and with an MSE loss the
estimate should be the posterior mean); the mean log q(theta_true | summary) on 2,000 held-out
mocks (information: higher is better, comparable between variants); training times. The
variants change one thing at a time: the NPE's training-set size, the compressor's
training-set size and loss, the density estimator, an ensemble (with each member on its own),
and an NPE on the raw XOD (log10(1 + n), z-scored, the non-empty bins of 512) instead of the
compression.

It needs the outputs of one analytic run (``snakemake --cores 2 --configfile config/analytic.yaml``):
``results/config/resolved.yaml``, the sigma and emission tables, ``results/training/xod.h5`` (the
exact posteriors' observed XODs) and ``results/analytic/exact_posteriors.h5``. Mock XODs for
training are drawn afresh (uniform in inference coordinates, one Poisson draw each) and cached
in ``--cache``; the compressors and NPEs are trained here, on the CPU by default.

Usage: python benchmarks/npe_information.py [--results results] [--variants all|i,j,...]
       [--pool 56000] [--threads 1]

Delete ``--cache`` after a change of the analytic model: the cached mocks would not match the
exact posteriors any more.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from clustersbi.analytic import expected_xods, mock_xods
from clustersbi.compress.data import TrainingSet, load_training_set
from clustersbi.compress.train import compress, train_compressor
from clustersbi.design import priors_by_name, prior_box
from clustersbi.npe import NPEConfig, sample_posteriors, train_npe_ensemble
from clustersbi.products import read_exact_posteriors
from clustersbi.stages.analytic import (
    build_model,
    compare_with_exact,
    fiducial_parameters,
    free_parameter_names,
    summarize_comparison,
    xxl_field,
)
from clustersbi.stages.compress import compressor_config

QUANTITIES = ("Omega_m", "sigma_8", "S8")
#: the last pool rows, never trained on: the held-out log-probability
N_HELD_OUT = 2000

#: name -> (compressor settings or None for the raw XOD, NPE settings, NPE training size);
#: compressor settings: n_train (its val split is a fifth of it, at most 4000), loss, optionally
#: batch_size and lr, and summary "mean_logstd" (the Gaussian-NLL compressor's mean and log width)
VARIANTS = {
    "baseline (C 3000 mse, MDN2 on 1200)": ({"n_train": 3000, "loss": "mse"}, {"num_components": 2}, 1200),
    "C 3000 mse, MDN2 on 5000": ({"n_train": 3000, "loss": "mse"}, {"num_components": 2}, 5000),
    "C 3000 mse, MDN2 on 20000": ({"n_train": 3000, "loss": "mse"}, {"num_components": 2}, 20000),
    "C 20000 mse, MDN2 on 1200": ({"n_train": 20000, "loss": "mse"}, {"num_components": 2}, 1200),
    "C 20000 mse, MDN2 on 5000": ({"n_train": 20000, "loss": "mse"}, {"num_components": 2}, 5000),
    "C 20000 gaussian_nll, MDN2 on 5000": ({"n_train": 20000, "loss": "gaussian_nll"}, {"num_components": 2}, 5000),
    "C 20000 gaussian_nll, MDN2 on mean + log width, 5000": (
        {"n_train": 20000, "loss": "gaussian_nll", "summary": "mean_logstd"}, {"num_components": 2}, 5000),
    "C 20000 mse, MDN10 on 5000": ({"n_train": 20000, "loss": "mse"}, {"num_components": 10}, 5000),
    "C 20000 mse, NSF on 5000": ({"n_train": 20000, "loss": "mse"}, {"density_estimator": "nsf"}, 5000),
    "C 40000 mse (batch 256), MDN2 on 5000": ({"n_train": 40000, "loss": "mse", "batch_size": 256}, {"num_components": 2}, 5000),
    "C 40000 mse (batch 256), ensemble 3 MDN2 + NSF on 5000": (
        {"n_train": 40000, "loss": "mse", "batch_size": 256},
        {"num_components": 2, "ensemble": [{"seed": 0}, {"seed": 1}, {"seed": 2}, {"density_estimator": "nsf", "seed": 3}]}, 5000),
    "raw XOD, MDN2 on 5000": (None, {"num_components": 2, "hidden_features": 64, "learning_rate": 2e-4}, 5000),
    "raw XOD, MDN2 on 20000": (None, {"num_components": 2, "hidden_features": 64, "learning_rate": 2e-4}, 20000),
}


def load_run(results: Path):
    config = yaml.safe_load((results / "config" / "resolved.yaml").read_text())
    model_cfg = {
        "xod": {"bins": config["xod"]["bins"], "marginal": config["xod"]["marginal"]},
        "cr_cut_cts_s": config["detection"]["cr_cut_cts_s"],
        "quadrature": config["analytic"]["quadrature"],
        "lt_band_kev": config["analytic"]["lt_band_kev"],
    }
    fiducial = {"Omega_m": config["cosmology"]["fiducial"]["Omega_m"], "sigma_8": config["cosmology"]["fiducial"]["sigma_8"],
                **config["analytic"]["fiducial"]}
    return config, model_cfg, fiducial


def mock_pool(results: Path, config, model_cfg, fiducial, n: int, cache: Path, seed: int = 12345):
    """(theta (n, P) physical, xod (n, 8, 8, 8)) mocks uniform in inference coordinates, cached."""
    path = cache / f"pool_{n}_{seed}.npz"
    if path.exists():
        d = np.load(path)
        return d["theta"], d["xod"], 0.0
    t0 = time.perf_counter()
    by_name = priors_by_name(config["priors"])
    names = free_parameter_names(config["priors"])
    rng = np.random.default_rng(seed)
    theta = np.column_stack([by_name[nm].from_inference(rng.uniform(*by_name[nm].inference_bounds, size=n)) for nm in names])
    model, _ = build_model(results / "analytic" / "sigma_table.h5", results / "xray" / "emission_table.h5", model_cfg)
    lam = expected_xods(model, float(config["analytic"]["area_deg2"]), theta, names=[xxl_field(nm) for nm in names],
                        base=fiducial_parameters(fiducial), batch_size=256)
    xod = mock_xods(lam, rng).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, theta=theta, xod=xod)
    return theta, xod, time.perf_counter() - t0


def to_inference(theta, names, by_name):
    return np.column_stack([by_name[n].to_inference(theta[:, j]) for j, n in enumerate(names)])


def train_compression(config, theta, xod, names, settings, out_dir: Path, seed: int = 0):
    """A compressor trained on the first ``n_train`` pool rows (val: the next n_train / 5)."""
    n_tr = settings["n_train"]
    n_va = min(n_tr // 5, 4000)
    split = np.array(["train"] * n_tr + ["val"] * n_va)
    ts = TrainingSet(theta[: n_tr + n_va], xod[: n_tr + n_va], split, list(names))
    extra = {k: settings[k] for k in ("batch_size", "lr") if k in settings}
    cfg = compressor_config("xod", {**config["compress"], "loss": settings["loss"], "seed": seed, **extra})
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = train_compressor(ts, cfg, tempfile.mkdtemp(dir=out_dir), device="cpu", resume=False)
    seconds = time.perf_counter() - t0

    def apply(x):
        est, std = compress(result, x)
        return (est, std) if settings.get("summary") == "mean_logstd" else est

    return apply, seconds, n_tr + n_va


def compressed(apply, theta_phys, x, names, by_name):
    est = apply(x)
    if isinstance(est, tuple):  # mean and predicted width: the width's logarithm as extra summaries
        return np.column_stack([compressed(lambda _: est[0], None, x, names, by_name), np.log(est[1])])
    safe = np.column_stack([np.clip(est[:, j], by_name[n].low * 0.5, None) if by_name[n].distribution == "loguniform" else est[:, j]
                            for j, n in enumerate(names)])
    return to_inference(safe, names, by_name)


def raw_features(x, ref):
    """log10(1 + n) of the XOD, flattened and z-scored with the statistics of ``ref``; bins empty
    in every row of ``ref`` are dropped (z-scored, a count there would be infinite)."""
    f = np.log10(1.0 + x.reshape(len(x), -1))
    r = np.log10(1.0 + ref.reshape(len(ref), -1))
    mu, sd = r.mean(axis=0), r.std(axis=0)
    keep = sd > 1e-6
    return (f[:, keep] - mu[keep]) / sd[keep]


def run_variant(name, spec, *, config, theta, xod, names, by_name, exact, x_obs, n_samples, cache_comp, cache):
    comp_settings, npe_settings, n_npe = spec
    low, high = prior_box(names, by_name)
    y_theta = to_inference(theta, names, by_name)
    t_comp = 0.0
    if comp_settings is None:
        start = 0
        feats = lambda x: raw_features(x, xod[:n_npe])
    else:
        key = tuple(sorted((k, v) for k, v in comp_settings.items() if k != "summary"))
        if key not in cache_comp:
            cache_comp[key] = train_compression(config, theta, xod, names, comp_settings, cache / "compressors")
        apply, t_comp, start = cache_comp[key]
        feats = lambda x: compressed(apply, None, x, names, by_name)
    n_val = max(300, n_npe // 4)
    rows_tr = slice(start, start + n_npe)
    rows_va = slice(start + n_npe, start + n_npe + n_val)
    if rows_va.stop > len(theta) - N_HELD_OUT:
        raise ValueError(f"{name}: the pool of {len(theta)} mocks is too small (needs {rows_va.stop})")
    # the run's infer settings without its ensemble (a variant names its own)
    base = {k: v for k, v in config["infer"].items() if k in NPEConfig.__dataclass_fields__ and k != "ensemble"}
    if n_npe >= 5000:  # larger sets: larger batches, shorter patience (epochs are longer)
        base.update(batch_size=256, stop_after_epochs=20)
    cfg = NPEConfig(**{**base, **npe_settings})
    t0 = time.perf_counter()
    ens = train_npe_ensemble(y_theta[rows_tr], feats(xod[rows_tr]), y_theta[rows_va], feats(xod[rows_va]), low, high, cfg,
                             device="cpu")
    t_npe = time.perf_counter() - t0
    y_obs, held = feats(x_obs), slice(len(theta) - N_HELD_OUT, len(theta))
    y_held, th_held = torch.as_tensor(feats(xod[held]), dtype=torch.float32), torch.as_tensor(y_theta[held], dtype=torch.float32)
    # the ensemble, then (for an ensemble) each member on its own
    candidates = [(name, ens.posterior, ens.members, ens.weights)]
    if len(ens.members) > 1:
        candidates += [(f"{name}: member {m}", member.posterior, [member], np.ones(1))
                       for m, member in zip(ens.member_names(), ens.members)]
    # the compressor's own error: its estimate of Omega_m and sigma_8 against the exact posterior mean
    comp_err = {q: float("nan") for q in QUANTITIES[:2]}
    if comp_settings is not None:
        t = np.asarray(y_obs)[:, :2]
        for j, q in enumerate(QUANTITIES[:2]):
            comp_err[q] = float(np.median(np.abs(t[:, j] - exact["mean"][:, j]) / exact["std"][:, j]))
    tables, rows = [], []
    for label, posterior, members, weights in candidates:
        samples = sample_posteriors(posterior, y_obs, n_samples, seed=1)
        table = compare_with_exact(exact, samples, by_name)
        table.insert(0, "variant", label)
        summ = summarize_comparison(table)
        # information proxy on held-out mocks: mean log q(theta_true | summary), q the (weighted
        # mixture of the) estimators' densities, not normalised on the prior box
        with torch.no_grad():
            lq = torch.stack([m.estimator.log_prob(th_held[None], y_held)[0] for m in members])
            lq = torch.logsumexp(lq + torch.log(torch.as_tensor(weights, dtype=torch.float32))[:, None], dim=0)
        tables.append(table)
        rows.append({"variant": label, "compressor_s": t_comp, "npe_s": t_npe, "npe_epochs": sum(m.best_epoch + 1 for m in members),
                     "held_out_log_prob": float(lq.mean()),
                     **{f"compressor_error_{q}": v for q, v in comp_err.items()},
                     **{f"offset_{q}": summ[q]["median_abs_offset"] for q in QUANTITIES},
                     **{f"mean_offset_{q}": summ[q]["mean_abs_offset"] for q in QUANTITIES},
                     **{f"width_{q}": summ[q]["median_width_ratio"] for q in QUANTITIES}})
    return tables, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--cache", type=Path, default=Path("results/benchmarks/npe_information"))
    ap.add_argument("--pool", type=int, default=56000, help="mock XODs drawn for training")
    ap.add_argument("--variants", default="all", help="'all' or comma-separated indices into the variant list")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (small networks: one is fastest)")
    ap.add_argument("--samples", type=int, default=2000, help="NPE samples per test XOD")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    config, model_cfg, fiducial = load_run(args.results)
    by_name = priors_by_name(config["priors"])
    names = free_parameter_names(config["priors"])
    theta, xod, t_pool = mock_pool(args.results, config, model_cfg, fiducial, args.pool, args.cache)
    exact = read_exact_posteriors(args.results / "analytic" / "exact_posteriors.h5")
    ts = load_training_set(args.results / "training" / "xod.h5")
    x_obs = np.asarray(ts.x[exact["row"]], dtype=np.float32)
    print(f"# {len(theta)} mocks ({t_pool:.1f} s to draw), {len(exact['row'])} exact posteriors, "
          f"{torch.get_num_threads()} torch threads")

    chosen = list(VARIANTS) if args.variants == "all" else [list(VARIANTS)[int(i)] for i in args.variants.split(",")]
    rows, tables, cache_comp = [], [], {}
    for name in chosen:
        table, r = run_variant(name, VARIANTS[name], config=config, theta=theta, xod=xod, names=names, by_name=by_name,
                               exact=exact, x_obs=x_obs, n_samples=args.samples, cache_comp=cache_comp, cache=args.cache)
        rows += r
        tables += table
        for row in r:
            print(json.dumps(row), flush=True)
    pd.concat(tables).to_csv(args.cache / f"tables_{args.variants.replace(',', '_')}.csv", index=False)
    print()
    print("| variant | offset Om | offset s8 | offset S8 | width Om | width s8 | width S8 | compressor error Om, s8 "
          "| held-out log q | compressor [s] | NPE [s] |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | " + " | ".join(f"{r[f'offset_{q}']:.2f}" for q in QUANTITIES) + " | "
              + " | ".join(f"{r[f'width_{q}']:.2f}" for q in QUANTITIES)
              + f" | {r['compressor_error_Omega_m']:.2f}, {r['compressor_error_sigma_8']:.2f}"
              + f" | {r['held_out_log_prob']:.3f} | {r['compressor_s']:.0f} | {r['npe_s']:.0f} |")


if __name__ == "__main__":
    main()
