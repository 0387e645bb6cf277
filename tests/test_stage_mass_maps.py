"""The mass_maps stage (clustersbi.stages.mass_maps) and its figures on a toy cutout file.

References: the split (no cluster of the test maps was trained on), the metrics module's own
tested functions recomputed on the written predictions, and exact scalings through the stage's
aggregation (a map times 1.1: b200 = 0.1, D = 0.1, power ratio 1.21).
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from clustersbi import mass_map_metrics as mm
from clustersbi.config import load_schema, validate_config
from clustersbi.cutouts import write_cutouts
from clustersbi.plots.mass_maps import plot_mass_maps
from clustersbi.stages import mass_maps as st
from clustersbi.unet import cluster_split

from mass_map_toys import toy_cutouts

REPO = Path(__file__).resolve().parents[1]
SEED = 11
VARIANTS = ("y", "multi3")


def mass_maps_config(**unet) -> dict:
    config = validate_config(
        {"design": {"n_simulations": 4, "chunk_size": 4},
         "priors": {"cosmology": [{"name": "Omega_m", "label": "x", "distribution": "uniform", "low": 0.2, "high": 0.4}]},
         "cosmology": {},
         "mass_maps": {"variants": list(VARIANTS), "split": {"train": 0.6, "val": 0.2, "test": 0.2},
                       "unet": {"n_filters": 4, "n_layers": 2, "max_epochs": 2, "batch_size": 8, **unet},
                       "metrics": {"mmd_pixels": 128}}},
        load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml"),
    )
    return config["mass_maps"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Cutouts, two trained variants, their evaluation and the figures."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mass_maps")
    cutouts = toy_cutouts(n_clusters=30, n_views=2, npix=16, seed=3)
    write_cutouts(root / "cutouts.h5", cutouts)
    cfg = mass_maps_config()
    models = {}
    for v in VARIANTS:
        models[v] = root / "models" / v / "model.pt"
        st.train_unet_stage(root / "cutouts.h5", v, cfg, SEED, models[v], device="cpu")
    out = {k: root / name for k, name in (("predictions", "predictions.h5"), ("metrics", "metrics.json"),
                                          ("table", "table4.csv"))}
    summary = st.evaluate_mass_maps_stage(root / "cutouts.h5", models, cfg, SEED, out["predictions"], out["metrics"],
                                          out["table"], device="cpu")
    plots = {p: root / "plots" / f"{p}.png" for p in ("examples", "pixel_differences", "profile_bias", "power_ratio",
                                                      "mmd", "training")}
    plot_mass_maps(out["predictions"], out["metrics"], {v: models[v].parent / "history.csv" for v in VARIANTS}, plots)
    torch.set_num_threads(before)
    return {"root": root, "cutouts": cutouts, "cfg": cfg, "models": models, "summary": summary, "plots": plots, **out}


def test_training_outputs_and_split(run):
    roles = cluster_split(run["cutouts"].cluster_id, (0.6, 0.2, 0.2), SEED)
    for v in VARIANTS:
        d = run["models"][v].parent
        for name in ("model.pt", "history.csv", "normalization.json", "config.json", "split.json"):
            assert (d / name).exists(), name
        split = json.loads((d / "split.json").read_text())
        assert split["counts"]["test"]["maps"] == int(np.sum(roles == "test"))
        assert json.loads((d / "config.json").read_text())["max_epochs"] == 2
    views = json.loads((run["models"]["multi3"].parent / "normalization.json").read_text())["views"]
    assert views == {"xray": ["xray_0.5-1.2", "xray_1.2-2", "xray_2-7"], "y": ["y"]}
    with h5py.File(run["predictions"]) as h5:
        index = h5["index"][...]
        assert np.all(roles[index] == "test") and index.size == np.sum(roles == "test")
        trained = set(run["cutouts"].cluster_id[roles == "train"])
        assert not trained & set(h5["cluster_id"][...].tolist()), "a test cluster was trained on"


def test_metrics_equal_the_metrics_module_on_the_written_maps(run):
    m = json.loads(run["metrics"].read_text())
    with h5py.File(run["predictions"]) as h5:
        true, r200, r500 = h5["true"][...], h5["r200_pix"][...], h5["r500_pix"][...]
        pred = {v: h5[f"pred/{v}"][...] for v in VARIANTS}
        np.testing.assert_allclose(true, run["cutouts"].images["mass"][h5["index"][...]])
        np.testing.assert_allclose(r200 * h5["pixel_kpc"][...], run["cutouts"].R200c_kpc[h5["index"][...]])
        log_m200 = np.log10(h5["M200c"][...])
    edges = np.asarray(m["mass_bin_edges_log10"])
    bins = mm.assign_mass_bins(log_m200, edges)
    assert sorted(np.bincount(bins).tolist()) == sorted(e["n_maps"] for e in m["results"]["y"]["mass_bins"])
    for v in VARIANTS:
        b = mm.profile_bias(pred[v], true, r200)
        for k, entry in enumerate(m["results"][v]["mass_bins"]):
            assert entry["b200"]["median"] == pytest.approx(np.median(b[bins == k, -1]), rel=1e-6, abs=1e-9)
        d = mm.pixel_relative_differences(pred[v], true, 0.5 * r500)
        assert m["results"][v]["pixel_relative_difference"]["r500_half"]["median"] == pytest.approx(np.median(d), rel=1e-6)
    with open(run["table"]) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(st.TABLE4_COLUMNS) and len(rows) == 3 * len(VARIANTS)
    assert float(rows[0]["b200_median"]) == pytest.approx(m["results"]["y"]["mass_bins"][0]["b200"]["median"], rel=1e-5)
    for path in run["plots"].values():
        assert path.stat().st_size > 5000, path


def test_stage_aggregation_of_a_scaled_map():
    cut = toy_cutouts(n_clusters=6, n_views=1, npix=16, seed=5)
    true = cut.images["mass"].astype(np.float64)
    r = cut.R200c_kpc / cut.pixel_kpc_array()
    bins = np.array([0, 0, 1, 1, 2, 2])
    cfg = mass_maps_config()
    res = st.variant_metrics(1.1 * true, true, 0.65 * r, r, bins, 3, cfg["metrics"], SEED)
    for entry in res["mass_bins"]:
        assert entry["n_maps"] == 2 and entry["b200"]["median"] == pytest.approx(0.1, rel=1e-9)
        np.testing.assert_allclose(entry["profile_bias"]["median"], 0.1, rtol=1e-9)
    for aperture in st.APERTURES:
        assert res["pixel_relative_difference"][aperture]["median"] == pytest.approx(0.1, rel=1e-6)
    np.testing.assert_allclose(res["power_ratio"]["median"], 1.21, rtol=1e-9)
    same = st.variant_metrics(true, true, 0.65 * r, r, bins, 3, cfg["metrics"], SEED)
    # the unbiased MMD^2 of two identical samples of m values is in [-2 n_kernels / m, 0]
    bound = 2 * len(cfg["metrics"]["mmd_bandwidths"]) / cfg["metrics"]["mmd_pixels"]
    assert -bound <= same["mmd2"]["median"] <= 0 and -bound <= same["mmd2"]["p84"] <= 0, same["mmd2"]
    assert res["mmd2"]["median"] > same["mmd2"]["p84"], (res["mmd2"], same["mmd2"])


def test_bad_variant_and_split_name_their_keys(tmp_path):
    cut = toy_cutouts(n_clusters=10, n_views=1, npix=8, seed=1)
    write_cutouts(tmp_path / "c.h5", cut)
    cfg = mass_maps_config()
    with pytest.raises(ValueError, match="mass_maps.variants.*stellar"):
        st.train_unet_stage(tmp_path / "c.h5", "stellar", cfg, SEED, tmp_path / "m" / "model.pt", device="cpu")
    with pytest.raises(ValueError, match="mass_maps.rebin"):
        st.train_unet_stage(tmp_path / "c.h5", "y", {**cfg, "rebin": 3}, SEED, tmp_path / "m" / "model.pt", device="cpu")
    bad = copy.deepcopy(cfg)
    bad["split"]["test"] = 0.5
    with pytest.raises(ValueError, match="mass_maps.split"):
        st.train_unet_stage(tmp_path / "c.h5", "y", bad, SEED, tmp_path / "m" / "model.pt", device="cpu")
