"""The cluster-images stage (analysis ``cluster_images``): cutouts and the X-ray mass CNN.

Contracts (rules of ``images.smk``; every output written atomically):

- ``cluster_cutouts``: config sections ``images``, ``xray`` (emission backend, response,
  absorption, kT grid; the bands are ``images.bands_kev``), ``cosmology.fiducial`` and ``seed``
  in; ``results/images/cutouts.h5`` out, in the cutout format of :mod:`clustersbi.cutouts`.
  ``images.source``:

  * ``generator``: the semi-analytic generator (:mod:`clustersbi.cluster_images`) for
    ``images.n_clusters`` halos drawn from the Tinker08 M500c mass function in
    [m500c_min, m500c_max] x [z_min, z_max] (or the halos of ``images.catalogue_csv``,
    columns ``M500c`` [Msun/h] and ``redshift``, optional ``region``, ``ra_deg``, ``dec_deg``),
    in ``images.n_regions`` sky regions; halo sample seeded by
    ``derive_seed(seed, CLUSTER_IMAGES, 0)``, cluster i by ``derive_seed(seed, CLUSTER_IMAGES, 1, i)``.
    Extras: ``icm_counts``, ``agn_counts`` (noise-free expected counts, all bands),
    ``cool_core``, ``c200c``. Attributes: ``images_config`` and ``emission`` (JSON).
  * ``user``: ``images.cutout_file``, validated and copied (its ``source`` kept).
  * ``simulation``: the project's own lightcones (inputs ``particles`` and ``gas``, the
    per-chunk files of rules ``simulate_lightcone`` and ``paint_gas`` for the first
    ``images.simulation.n_chunks`` chunks): every FoF halo above
    ``images.simulation.mass_min_msun_h`` in every slab, cut out by
    :func:`clustersbi.sim_cutouts.slab_cutouts` (one view along the line of sight, pixel = cell,
    ``images.simulation.npix`` cells per side; X-ray expected counts for
    ``images.simulation.exposure_s``, no noise). ``region`` numbers the (simulation, lightcone,
    slab) volumes in file order, so the mass CNN's folds never split one volume; painted mocks of
    one PM simulation (nested designs) share its volumes' regions.
- ``train_mass_cnn`` (one job per ``{model}`` of ``mass_cnn.models``: ``single`` = the sum of
  the X-ray channels, ``multi`` = the X-ray channels stacked; Ho et al. sections 4-5): in the
  cutouts; out ``results/models/mass_cnn/{model}/model.pt`` (per fold the ``state_dict``, the
  count normalisation, the target standardisation; plus ``config``),
  ``.../history.csv`` (fold, epoch, train_loss, val_loss), ``.../predictions.csv`` (one row per
  cutout: index, cluster_id, view, region, fold, redshift, ln_m500c_true, ln_m500c_pred) and
  ``.../saliency.h5`` (``edges_r500`` (B+1,); per test cutout ``radial`` (N, B) the mean
  |gradient| in annuli of r/R500c, ``radial_nphot`` (N, B) the N_phot proxy's closed-form
  saliency (Ho eq. 13) of the same images, ``s_agn``, ``s_icm`` (N,) the mean saliency over
  AGN- and ICM-dominated pixels (Ho eq. 14), ``index`` (N,); ``example_saliency``,
  ``example_input`` (E, H, W) of the first test cutouts of fold 0). Folds:
  :func:`clustersbi.mass_cnn.assign_folds` of ``region``; network initialisation and batches
  seeded by ``derive_seed(seed, CLUSTER_IMAGES, 2, model number, fold)``.
- ``mass_cnn_table``: in the cutouts and every model's predictions; out
  ``results/mass_cnn/table3.csv`` (a row per estimator: the CNNs and the power-law proxies
  N_phot (whole cutout), N_phot,500c (within R500c), L_X (idealised: noise-free ICM count rate
  within R500c x 4 pi D_M^2, no AGN, no background), each a regression of ln M on ln S and z
  fitted on the training folds (Ho Fig. 4):
  ``model``, ``scatter_dex``, ``scatter_pct``, ``bias_dex``, ``predictive_scatter_dex`` (Ho eq. 7,
  proxies only; mean over folds), ``n``) and ``results/mass_cnn/predictions.csv`` (per cutout
  the truth and every estimator's ln M500c).
- ``tune_mass_cnn`` (optional, not in the default target): ``results/tuning/mass_cnn/{model}/tuning.json``,
  an Optuna TPE search (:data:`clustersbi.mass_cnn.SEARCH_SPACE`) of ``mass_cnn.tune.n_trials``
  trainings on fold 0's training folds, each scored by its best validation MSE.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..cluster_images import ImageModel, draw_halos, generate_cutouts, halos_from_catalogue
from ..cosmology import Cosmology
from ..cutouts import read_cutouts, write_cutouts
from ..design import SeedStream, derive_seed
from ..io import ChunkFile, h5_read_attrs
from ..xray import apply_absorption, compute_emission_table, load_response

__all__ = ["image_model", "load_catalogue_csv", "cutouts_stage", "simulation_cutouts", "emission_for_images", "MASS_CNN_MODELS",
           "cnn_inputs", "cnn_settings", "train_mass_cnn_stage", "proxy_observables", "mass_cnn_table_stage",
           "tune_mass_cnn_stage"]

#: the mass CNN variants (Ho et al. sections 4 and 5)
MASS_CNN_MODELS = ("single", "multi")

log = logging.getLogger(__name__)


def image_model(images_cfg: Mapping[str, Any]) -> ImageModel:
    """The generator parameters of config section ``images`` (``generator`` + ``npix``, ``pixel_kpc``)."""
    gen = dict(images_cfg["generator"])
    gen["background_cts_s_arcmin2"] = tuple(float(v) for v in gen["background_cts_s_arcmin2"])
    if len(gen["background_cts_s_arcmin2"]) not in (1, len(images_cfg["bands_kev"])):
        raise ValueError("images.generator.background_cts_s_arcmin2: give one value or one per band of images.bands_kev")
    return ImageModel(npix=int(images_cfg["npix"]), pixel_kpc=float(images_cfg["pixel_kpc"]), **gen)


def emission_for_images(images_cfg: Mapping[str, Any], xray_cfg: Mapping[str, Any], z_max: float | None = None):
    """(emission table of the images' bands, response) from config sections ``images`` and ``xray``.

    ``z_max``: highest redshift the table must cover (default: ``images.z_max`` and the catalogue's).
    """
    r = xray_cfg["response"]
    response = load_response(arf=r["arf"], rmf=r["rmf"], builtin=r["builtin"])
    if xray_cfg["absorption"]["enabled"]:
        response = apply_absorption(response, xray_cfg["absorption"]["nh_1e22"])
    tab = xray_cfg["table"]
    z_max = float(images_cfg["z_max"] if z_max is None else z_max)
    if images_cfg["catalogue_csv"] and images_cfg["source"] == "generator":
        z_max = max(z_max, float(np.max(load_catalogue_csv(images_cfg["catalogue_csv"])["redshift"])))
    dz = float(tab["dz"])
    z = np.round(np.arange(0.0, z_max + 2.0 * dz - 1e-12, dz), 9)
    kt = np.geomspace(tab["kt_min_kev"], tab["kt_max_kev"], int(tab["n_kt"]))
    em = xray_cfg["emission"]
    table = compute_emission_table(response, backend=em["backend"], bands_kev=images_cfg["bands_kev"],
                                   metallicity=em["metallicity_solar"], kt_kev=kt, z=z, atomdb_dir=em["atomdb_dir"])
    return table, response


def load_catalogue_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a halo catalogue CSV (``M500c`` [Msun/h], ``redshift``; optional ``region``,
    ``ra_deg``, ``dec_deg``); errors name the file and the missing column."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"images.catalogue_csv {path}: no rows")
    out: dict[str, np.ndarray] = {}
    for col in ("M500c", "redshift", "region", "ra_deg", "dec_deg"):
        if col in rows[0]:
            out[col] = np.array([float(r[col]) for r in rows])
        elif col in ("M500c", "redshift"):
            raise ValueError(f"images.catalogue_csv {path}: missing column {col!r} (have {sorted(rows[0])})")
    if np.any(out["M500c"] <= 0) or np.any(out["redshift"] <= 0):
        raise ValueError(f"images.catalogue_csv {path}: M500c and redshift must be positive")
    return out


def _particle_slabs(particles: ChunkFile, gas_attrs: Mapping[str, Any], gas_lc_groups, where: str):
    """Yield (volume key, particle positions (N, 3) [Mpc/h], gas slab group) of one gas simulation."""
    sim = int(gas_attrs.get("simulation", gas_attrs["index"]))  # a painted mock names its PM run
    name = f"sim_{sim:06d}"
    if name not in particles.h5:
        raise ValueError(f"{where}: the particle file has no simulation {sim} (gas of simulation {gas_attrs['index']})")
    for light, g_lc in gas_lc_groups:
        for g_slab in ChunkFile.slabs(g_lc):
            slab = int(g_slab.attrs["index"])
            path = f"{name}/lc_{light:02d}/slab_{slab:02d}/positions_mpc_h"
            if path not in particles.h5:
                raise ValueError(f"{where}: the particle file has no {path}")
            yield (sim, light, slab), particles.h5[path][:], g_slab


def simulation_cutouts(particle_files, gas_files, images_cfg: Mapping[str, Any], xray_cfg: Mapping[str, Any]):
    """Cutouts of every halo above the mass cut in the lightcone slabs of ``particle_files`` /
    ``gas_files`` (pairs of one chunk's files), or None if no slab holds one (module contract)."""
    from ..cutouts import concatenate_cutouts
    from ..sim_cutouts import slab_cutouts

    sim_cfg = images_cfg["simulation"]
    z_top = 0.0
    for gas_file in gas_files:
        with ChunkFile.open(gas_file) as gas:
            for _, g_sim in gas.simulations(keys=("index",)):
                z_top = max([z_top] + [float(g.attrs["z_hi"]) for _, g_lc in ChunkFile.lightcones(g_sim) for g in ChunkFile.slabs(g_lc)])
    table, _ = emission_for_images(images_cfg, xray_cfg, z_max=z_top)
    parts, regions, n_cut = [], {}, 0
    for particle_file, gas_file in zip(particle_files, gas_files, strict=True):
        where = f"{gas_file} and {particle_file}"
        with ChunkFile.open(particle_file) as particles, ChunkFile.open(gas_file) as gas:
            for attrs, g_sim in gas.simulations():
                for key, positions, g_slab in _particle_slabs(particles, attrs, ChunkFile.lightcones(g_sim), where):
                    region = regions.setdefault(key, len(regions))
                    cut = slab_cutouts(positions, g_slab["ne_cm3"][:], g_slab["t_k"][:], h5_read_attrs(g_slab),
                                       float(attrs["omega_m"]), float(attrs["h"]), table,
                                       mass_min_msun_h=float(sim_cfg["mass_min_msun_h"]), npix=int(sim_cfg["npix"]),
                                       exposure_s=float(sim_cfg["exposure_s"]), region=region, first_id=n_cut)
                    log.info("simulation %s, lightcone %d, slab %d: %d halos above %.3g Msun/h", attrs["index"], key[1], key[2],
                             0 if cut is None else cut.n, sim_cfg["mass_min_msun_h"])
                    if cut is not None:
                        parts.append(cut)
                        n_cut += cut.n
    if not parts:
        return None
    cut = concatenate_cutouts(parts)
    cut.attrs = {"images_config": json.dumps(dict(images_cfg), default=str), "emission": json.dumps(table.metadata, default=str),
                 "inputs": json.dumps({"particles": [str(p) for p in particle_files], "gas": [str(g) for g in gas_files]})}
    return cut


def cutouts_stage(images_cfg: Mapping[str, Any], xray_cfg: Mapping[str, Any], fiducial: Mapping[str, float],
                  seed: int, out: str | Path, particle_files=(), gas_files=()) -> None:
    """Write ``results/images/cutouts.h5`` (module contract); ``particle_files``, ``gas_files``:
    the per-chunk lightcone files of source ``simulation``."""
    if images_cfg["source"] == "simulation":
        cut = simulation_cutouts(particle_files, gas_files, images_cfg, xray_cfg)
        if cut is None:
            raise ValueError(f"images.simulation.mass_min_msun_h = {images_cfg['simulation']['mass_min_msun_h']:.3g}: "
                             f"no halo above it in the slabs of {list(map(str, gas_files))}; lower the cut")
        log.info("simulation cutouts: %d from %d volumes", cut.n, len(np.unique(cut.region)))
        write_cutouts(out, cut)
        return
    if images_cfg["source"] == "user":
        path = images_cfg["cutout_file"]
        if not path:
            raise ValueError("images.cutout_file: needed with images.source: user")
        cut = read_cutouts(path)
        log.info("user cutouts %s: %d cutouts, channels %s", path, cut.n, cut.channels)
        write_cutouts(out, cut)
        return
    from tqdm import tqdm

    cosmo = Cosmology.from_mapping(fiducial)
    model = image_model(images_cfg)
    table, response = emission_for_images(images_cfg, xray_cfg)
    rng = np.random.default_rng(derive_seed(seed, SeedStream.CLUSTER_IMAGES, 0))
    if images_cfg["catalogue_csv"]:
        cat = load_catalogue_csv(images_cfg["catalogue_csv"])
        halos = halos_from_catalogue(cat["M500c"], cat["redshift"], cat.get("region"), cat.get("ra_deg"), cat.get("dec_deg"),
                                     n_regions=images_cfg["n_regions"], region_side_deg=images_cfg["region_side_deg"], rng=rng)
    else:
        if images_cfg["m500c_min"] >= images_cfg["m500c_max"] or images_cfg["z_min"] >= images_cfg["z_max"]:
            raise ValueError("images: m500c_min < m500c_max and z_min < z_max needed")
        halos = draw_halos(cosmo, int(images_cfg["n_clusters"]), (images_cfg["m500c_min"], images_cfg["m500c_max"]),
                           (images_cfg["z_min"], images_cfg["z_max"]), int(images_cfg["n_regions"]),
                           float(images_cfg["region_side_deg"]), rng)
    seeds = [derive_seed(seed, SeedStream.CLUSTER_IMAGES, 1, int(i)) for i in halos.cluster_id]
    log.info("generating %d clusters x %d views, %d^2 pixels of %.1f kpc", halos.n, model.n_views, model.npix, model.pixel_kpc)
    cut = generate_cutouts(halos, model, cosmo, table, response, seeds, progress=lambda it: tqdm(it, desc="cutouts", mininterval=10))
    cut.attrs = {"images_config": json.dumps(dict(images_cfg), default=str), "emission": json.dumps(table.metadata, default=str)}
    write_cutouts(out, cut)


# ============================================================================ mass CNN
def cnn_inputs(cut, model: str) -> np.ndarray:
    """Photon maps (N, C, H, W) of a variant: ``single`` (sum of the X-ray bands) or ``multi``."""
    xray = cut.stack(cut.xray_channels)
    if not cut.xray_channels:
        raise ValueError("cutouts have no X-ray channel (xray_<lo>-<hi>)")
    if model == "single":
        return xray.sum(axis=1, keepdims=True)
    if model == "multi":
        return xray
    raise ValueError(f"mass_cnn.models: unknown model {model!r}; known: {MASS_CNN_MODELS}")


def cnn_settings(cnn_cfg: Mapping[str, Any]):
    from ..mass_cnn import CnnSettings

    return CnnSettings(batch_size=int(cnn_cfg["batch_size"]), learning_rate=float(cnn_cfg["learning_rate"]),
                       weight_decay=float(cnn_cfg["weight_decay"]), max_epochs=int(cnn_cfg["max_epochs"]),
                       patience=int(cnn_cfg["patience"]), filters=tuple(cnn_cfg["filters"]), dense=tuple(cnn_cfg["dense"]))


def _validation_split(cluster_id: np.ndarray, candidates: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of validation cutouts: a random ``fraction`` of the clusters among the
    ``candidates`` (mask), with all their views."""
    ids = np.unique(cluster_id[candidates])
    n_val = max(1, int(round(fraction * ids.size)))
    return candidates & np.isin(cluster_id, rng.choice(ids, n_val, replace=False))


def _write_csv(path, rows: list[dict]) -> None:
    from ..io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def train_mass_cnn_stage(cutouts_path, model: str, cnn_cfg: Mapping[str, Any], seed: int, threads: int,
                         out_model, out_history, out_predictions, out_saliency) -> None:
    """Cross-validated training of one CNN variant (module contract)."""
    import h5py
    import torch

    from .. import mass_cnn as mc
    from ..io import atomic_path

    torch.set_num_threads(max(1, int(threads)))
    cut = read_cutouts(cutouts_path)
    rebin = int(cnn_cfg["rebin"])
    counts = mc.rebin_images(cnn_inputs(cut, model).astype(np.float64), rebin)
    ln_m = np.log(cut.M500c)
    folds = mc.assign_folds(cut.region, int(cnn_cfg["n_folds"]))
    settings = cnn_settings(cnn_cfg)
    model_number = MASS_CNN_MODELS.index(model)
    sal_cfg = cnn_cfg["saliency"]
    edges = np.linspace(0.0, float(sal_cfg["max_radius_r500"]), int(sal_cfg["n_bins"]) + 1)
    r500_pix = cut.R500c_kpc / (cut.pixel_kpc_array() * rebin)
    pred = np.full(cut.n, np.nan)
    states, history, radial, radial_proxy, s_agn, s_icm, sal_index = {}, [], [], [], [], [], []
    examples_sal = examples_in = None
    for k in range(int(cnn_cfg["n_folds"])):
        test = folds == k
        train_all = ~test
        rng = np.random.default_rng(derive_seed(seed, SeedStream.CLUSTER_IMAGES, 2, model_number, k))
        val = _validation_split(cut.cluster_id, train_all, float(cnn_cfg["val_fraction"]), rng)
        train = train_all & ~val
        norm = mc.fit_count_normalisation(counts[train], cut.redshift[train])
        x = mc.transform_counts(counts, cut.redshift, norm)
        net, hist, std = mc.train_mass_cnn(x[train], ln_m[train], x[val], ln_m[val], settings,
                                           seed=derive_seed(seed, SeedStream.CLUSTER_IMAGES, 2, model_number, k))
        pred[test] = mc.predict(net, x[test], std)
        history += [{"fold": k, **h} for h in hist]
        states[k] = {"state_dict": net.state_dict(), "gamma": norm.gamma, "eta": norm.eta, "y_mean": std[0], "y_std": std[1]}
        log.info("fold %d: %d train, %d val, %d test, %d epochs, test rms %.3f", k, train.sum(), val.sum(), test.sum(),
                 len(hist), float(np.sqrt(np.mean((pred[test] - ln_m[test]) ** 2))))
        # saliency on the test fold (summed over channels: the pixel's total importance)
        sal = mc.saliency(net, x[test], std).sum(axis=1)
        radial.append(mc.radial_profile(sal, r500_pix[test], edges))
        # the N_phot proxy fitted on the same training images: d mu / d x_ij = ln 10 10^x_ij / (alpha N)
        n_norm = (10.0 ** x - 1.0).sum(axis=1)
        total = n_norm.reshape(cut.n, -1).sum(1)
        proxy = mc.fit_power_law_proxy(np.log(total[train]), ln_m[train] - np.log(mc.MU_PIVOT_MSUN_H), cut.redshift[train])
        sal_proxy = np.log(10.0) * (10.0 ** x[test]).sum(axis=1) / (proxy.alpha * total[test][:, None, None])
        radial_proxy.append(mc.radial_profile(np.abs(sal_proxy), r500_pix[test], edges))
        if "icm_counts" in cut.extras and "agn_counts" in cut.extras:
            a, b = mc.mask_saliency(sal, mc.rebin_images(cut.extras["icm_counts"][test], rebin),
                                    mc.rebin_images(cut.extras["agn_counts"][test], rebin))
        else:
            a = b = np.full(int(test.sum()), np.nan)
        s_agn.append(a)
        s_icm.append(b)
        sal_index.append(np.flatnonzero(test))
        if examples_sal is None:
            n_ex = min(4, int(test.sum()))
            examples_sal, examples_in = sal[:n_ex], x[test][:n_ex].sum(axis=1)
    with atomic_path(out_model) as tmp:
        torch.save({"folds": states, "model": model, "config": canonical_cfg(cnn_cfg), "n_channels": counts.shape[1],
                    "npix": cut.npix // rebin, "rebin": rebin}, tmp)
    _write_csv(out_history, history)
    _write_csv(out_predictions, [
        {"index": i, "cluster_id": int(cut.cluster_id[i]), "view": int(cut.view[i]), "region": int(cut.region[i]),
         "fold": int(folds[i]), "redshift": float(cut.redshift[i]), "ln_m500c_true": float(ln_m[i]), "ln_m500c_pred": float(pred[i])}
        for i in range(cut.n)
    ])
    with atomic_path(out_saliency) as tmp, h5py.File(tmp, "w") as h5:
        h5["edges_r500"] = edges
        h5["radial"] = np.concatenate(radial)
        h5["radial_nphot"] = np.concatenate(radial_proxy)
        h5["s_agn"] = np.concatenate(s_agn)
        h5["s_icm"] = np.concatenate(s_icm)
        h5["index"] = np.concatenate(sal_index)
        h5["example_saliency"] = examples_sal
        h5["example_input"] = examples_in
        h5.attrs["model"] = model


def canonical_cfg(cfg: Mapping[str, Any]) -> str:
    return json.dumps(cfg, sort_keys=True, default=str)


def proxy_observables(cut, fiducial: Mapping[str, float]) -> dict[str, np.ndarray]:
    """ln of the scalar proxies per cutout: N_phot, N_phot,500c (all X-ray bands) and the idealised L_X."""
    from ..constants import MPC_CM
    from ..cosmology import comoving_distance_mpc_h
    from ..mass_cnn import aperture_sum

    counts = cut.stack(cut.xray_channels).sum(axis=1)
    r500_pix = cut.R500c_kpc / cut.pixel_kpc_array()
    out = {"N_phot": np.log(np.maximum(aperture_sum(counts), 1.0)),
           "N_phot_500c": np.log(np.maximum(aperture_sum(counts, r500_pix), 1.0))}
    if "icm_counts" in cut.extras:
        cosmo = Cosmology.from_mapping(fiducial)
        d_m_cm = comoving_distance_mpc_h(cut.redshift, cosmo.Omega_m) * MPC_CM / cosmo.h
        rate = aperture_sum(cut.extras["icm_counts"].astype(np.float64), r500_pix) / cut.exposure_s
        out["L_X"] = np.log(np.maximum(rate * 4.0 * np.pi * d_m_cm**2, 1e-300))
    return out


def mass_cnn_table_stage(cutouts_path, prediction_files: Mapping[str, str], cnn_cfg: Mapping[str, Any],
                         fiducial: Mapping[str, float], out_table, out_predictions) -> None:
    """Table-3-like comparison of the CNNs with power-law proxies (module contract)."""
    import pandas as pd

    from .. import mass_cnn as mc

    cut = read_cutouts(cutouts_path)
    ln_m = np.log(cut.M500c)
    mu = ln_m - np.log(mc.MU_PIVOT_MSUN_H)
    folds = mc.assign_folds(cut.region, int(cnn_cfg["n_folds"]))
    preds: dict[str, np.ndarray] = {}
    predictive: dict[str, float] = {}
    for name, ln_s in proxy_observables(cut, fiducial).items():
        p = np.full(cut.n, np.nan)
        sig = []
        for k in range(int(cnn_cfg["n_folds"])):
            test = folds == k
            # test-fold predictions: the regression of ln M on ln S (Ho Fig. 4); the predictive
            # scatter: eq. 7 of the forward relation (Ho Table 3)
            regression = mc.fit_inverse_power_law(ln_s[~test], ln_m[~test], cut.redshift[~test])
            p[test] = regression.predict_ln_m(ln_s[test], cut.redshift[test])
            proxy = mc.fit_power_law_proxy(ln_s[~test], mu[~test], cut.redshift[~test])
            sig.append(proxy.predictive_scatter_ln / np.log(10.0))
        preds[name] = p
        predictive[name] = float(np.mean(sig))
    for model, path in prediction_files.items():
        frame = pd.read_csv(path)
        if len(frame) != cut.n or not np.allclose(frame["ln_m500c_true"], ln_m):
            raise ValueError(f"{path}: predictions do not match the cutouts {cutouts_path}")
        preds[f"CNN_{model}"] = frame["ln_m500c_pred"].to_numpy()
    rows = []
    for name, p in preds.items():
        stats = mc.residual_statistics(p, ln_m)
        rows.append({"model": name, "scatter_dex": stats["scatter_dex"], "scatter_pct": stats["scatter_pct"],
                     "bias_dex": stats["bias_dex"], "predictive_scatter_dex": predictive.get(name, float("nan")), "n": stats["n"]})
    _write_csv(out_table, rows)
    _write_csv(out_predictions, [
        {"index": i, "cluster_id": int(cut.cluster_id[i]), "region": int(cut.region[i]), "fold": int(folds[i]),
         "redshift": float(cut.redshift[i]), "ln_m500c_true": float(ln_m[i]), **{f"ln_m500c_{k}": float(v[i]) for k, v in preds.items()}}
        for i in range(cut.n)
    ])


def tune_mass_cnn_stage(cutouts_path, model: str, cnn_cfg: Mapping[str, Any], seed: int, threads: int, out_json) -> None:
    """Optuna search of one variant's hyperparameters on fold 0 (module contract)."""
    import torch

    from .. import mass_cnn as mc
    from ..io import write_json

    torch.set_num_threads(max(1, int(threads)))
    cut = read_cutouts(cutouts_path)
    counts = mc.rebin_images(cnn_inputs(cut, model).astype(np.float64), int(cnn_cfg["rebin"]))
    ln_m = np.log(cut.M500c)
    folds = mc.assign_folds(cut.region, int(cnn_cfg["n_folds"]))
    model_number = MASS_CNN_MODELS.index(model)
    rng = np.random.default_rng(derive_seed(seed, SeedStream.CLUSTER_IMAGES, 2, model_number, 0))
    train_all = folds != 0
    val = _validation_split(cut.cluster_id, train_all, float(cnn_cfg["val_fraction"]), rng)
    train = train_all & ~val
    x = mc.transform_counts(counts, cut.redshift, mc.fit_count_normalisation(counts[train], cut.redshift[train]))
    tune = cnn_cfg["tune"]
    result = mc.tune_mass_cnn(x[train], ln_m[train], x[val], ln_m[val], cnn_settings(cnn_cfg),
                              derive_seed(seed, SeedStream.CLUSTER_IMAGES, 3, model_number),
                              n_trials=int(tune["n_trials"]), n_startup_trials=int(tune["n_startup_trials"]))
    result["model"] = model
    write_json(out_json, result)
