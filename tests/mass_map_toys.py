"""A toy cutout set in the cutout format for the mass_maps stage tests (not physics: a stand-in
with the format's channels whose mass map is a known function of hidden cluster properties).

Each cluster has log10 M200c uniform in [13.5, 15.2], R200c = 1.2 Mpc (M200c / 1e14.5)^(1/3),
R500c = 0.65 R200c, and maps of side 2 R200c (pixel_kpc varies per cluster, as in de Andres et
al.). Its projected mass is an elliptical cored profile plus one satellite blob (10% of the
mass), the orientation and the satellite's position changing with the view; Compton-y follows
the smooth main halo only (so y alone cannot see the satellite), the X-ray counts (three bands,
Poisson) follow the main halo squared plus a faint satellite, and the optional stellar map
follows both.
"""

from __future__ import annotations

import numpy as np

from clustersbi.cutouts import Cutouts

BANDS = ((0.5, 1.2), (1.2, 2.0), (2.0, 7.0))


def _profile(npix, q, angle, core, cx=0.0, cy=0.0):
    c = (npix - 1) / 2
    yy, xx = np.mgrid[0:npix, 0:npix] - c
    xr = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    yr = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    return 1.0 / (1.0 + (xr**2 + (yr / q) ** 2) / core**2)


def toy_cutouts(n_clusters: int = 40, n_views: int = 3, npix: int = 24, seed: int = 0, stellar: bool = False) -> Cutouts:
    rng = np.random.default_rng(seed)
    log_m = rng.uniform(13.5, 15.2, n_clusters)
    m200 = 10**log_m
    r200 = 1200.0 * (m200 / 10**14.5) ** (1 / 3)
    images = {f"xray_{lo:g}-{hi:g}": [] for lo, hi in BANDS}
    images.update({"y": [], "mass": []})
    if stellar:
        images["stellar"] = []
    cols = {k: [] for k in ("cluster_id", "view", "region", "redshift", "M500c", "M200c", "R500c_kpc", "R200c_kpc",
                            "exposure_s", "pixel_kpc")}
    for c in range(n_clusters):
        q, core = rng.uniform(0.6, 1.0), rng.uniform(1.5, 3.0)
        for v in range(n_views):
            angle = rng.uniform(0, np.pi)
            sx, sy = rng.uniform(-npix / 3, npix / 3, 2)
            main = _profile(npix, q, angle, core)
            sat = _profile(npix, 1.0, 0.0, 0.8, sx, sy) ** 2
            mass = 0.9 * m200[c] * main / main.sum() + 0.1 * m200[c] * sat / sat.sum()
            images["mass"].append(mass)
            images["y"].append(1e-5 * (m200[c] / 1e14) ** (2 / 3) * main)
            rate = 40.0 * (m200[c] / 1e14) ** 0.6 * (main**2 + 0.3 * sat)
            for k, frac in zip(list(images)[:3], (0.5, 0.3, 0.2)):
                images[k].append(rng.poisson(frac * rate).astype(np.float32))
            if stellar:
                images["stellar"].append(0.02 * mass * (0.5 + sat / sat.max()))
            for k, val in (("cluster_id", c), ("view", v), ("region", c % 4), ("redshift", 0.1),
                           ("M500c", 0.7 * m200[c]), ("M200c", m200[c]), ("R500c_kpc", 0.65 * r200[c]),
                           ("R200c_kpc", r200[c]), ("exposure_s", 1e4), ("pixel_kpc", 2 * r200[c] / npix)):
                cols[k].append(val)
    n = n_clusters * n_views
    return Cutouts(
        images={k: np.asarray(v, dtype=np.float32) for k, v in images.items()},
        position=rng.uniform(0, 500, (n, 3)), source="user", **{k: np.asarray(v) for k, v in cols.items()},
    )
