"""Friends-of-friends: injected halos recovered exactly, periodic wrap, single-linkage reference."""

from __future__ import annotations

import astropy.cosmology as astropy_cosmology
import astropy.units as u
import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from clustersbi.constants import RHO_CRIT_MSUN_H_MPC_H3
from clustersbi.fof import HALO_COLUMNS, fof_halos, fof_labels, linking_length_mpc_h, particle_mass_msun_h

RHO_CRIT_RTOL = 1e-6
CENTRE_ATOL_MPC_H = 1e-9
BOX_MPC_H = 100.0


def _ball(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    """n points uniform in a ball: any two lie within 2 * radius of each other."""
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * radius * rng.uniform(size=(n, 1)) ** (1.0 / 3.0)


def _injected_catalogue(seed: int = 3):
    """Compact blobs of known membership (some across the box faces) plus sparse background."""
    rng = np.random.default_rng(seed)
    n_background = 20000
    members = [150, 40, 25, 300, 60, 33]
    n_total = n_background + sum(members)
    ll = linking_length_mpc_h(BOX_MPC_H, n_total)
    centres = np.array(
        [
            [0.05 * ll, BOX_MPC_H - 0.1 * ll, 50.0],  # straddles x = 0 and y = L
            [BOX_MPC_H - 0.01, 0.02, BOX_MPC_H - 0.03],  # straddles a corner
            [20.0, 30.0, 40.0],
            [70.0, 70.0, 0.0],  # straddles z = 0
            [50.0, 10.0, 80.0],
            [85.0, 45.0, 15.0],
        ]
    )
    # radius 0.4 ll: every pair in a blob is linked, so the blob is exactly one group
    blobs = [np.mod(c + _ball(rng, m, 0.4 * ll), BOX_MPC_H) for c, m in zip(centres, members)]
    # background: uniform, kept away (> 3 ll) from the blobs so no particle joins one
    background = rng.uniform(0, BOX_MPC_H, size=(3 * n_background, 3))
    d = background[:, None, :] - centres[None, :, :]
    d = np.mod(d + 0.5 * BOX_MPC_H, BOX_MPC_H) - 0.5 * BOX_MPC_H
    far = np.all(np.linalg.norm(d, axis=2) > 3 * ll, axis=1)
    background = background[far][:n_background]
    pos = np.concatenate(blobs + [background])
    truth = np.concatenate([np.full(m, i) for i, m in enumerate(members)] + [np.full(n_background, -1)])
    return pos, truth, centres, members, n_total


def test_rho_crit_matches_astropy():
    ref = astropy_cosmology.FlatLambdaCDM(H0=100.0, Om0=0.3, Tcmb0=0).critical_density0.to(u.Msun / u.Mpc**3).value
    assert RHO_CRIT_MSUN_H_MPC_H3 == pytest.approx(ref, rel=RHO_CRIT_RTOL), f"{RHO_CRIT_MSUN_H_MPC_H3} vs {ref}"
    # Pinocchio's README value for its test run: 2.775499745e11 * 0.3071 * 4^3 = 5.456e12
    assert particle_mass_msun_h(0.3071, 256.0, 64**3) == pytest.approx(5.456e12, rel=1e-3)
    assert particle_mass_msun_h(0.3, 100.0, 1000) == pytest.approx(RHO_CRIT_MSUN_H_MPC_H3 * 0.3 * 1e3, rel=1e-12)


def test_injected_blobs_recovered_exactly():
    pos, truth, centres, members, n_total = _injected_catalogue()
    vel = np.zeros_like(pos)
    vel[: len(truth)] = truth[:, None] * 10.0  # each blob moves at a known velocity
    mp = 1e12
    halos = fof_halos(pos, vel, BOX_MPC_H, mp, b=0.2, min_particles=10)
    assert list(halos.columns[: len(HALO_COLUMNS)]) == list(HALO_COLUMNS)
    assert len(halos) == len(members), f"found {len(halos)} halos, injected {len(members)}"
    assert sorted(halos["n_part"]) == sorted(members), f"{sorted(halos['n_part'])} vs {sorted(members)}"
    for i, m in enumerate(members):
        row = halos[halos["n_part"] == m].iloc[0]
        blob = pos[truth == i]
        # periodic mean of the blob around its (known) injection centre
        d = np.mod(blob - centres[i] + 0.5 * BOX_MPC_H, BOX_MPC_H) - 0.5 * BOX_MPC_H
        expected = np.mod(centres[i] + d.mean(axis=0), BOX_MPC_H)
        got = row[["x", "y", "z"]].to_numpy(float)
        sep = np.mod(got - expected + 0.5 * BOX_MPC_H, BOX_MPC_H) - 0.5 * BOX_MPC_H
        assert np.all(np.abs(sep) < CENTRE_ATOL_MPC_H), f"blob {i}: centre {got} vs {expected}"
        assert np.all((got >= 0) & (got < BOX_MPC_H)), f"blob {i}: centre {got} outside the box"
        assert row["vx"] == pytest.approx(10.0 * i), f"blob {i}: vx {row['vx']}"
        assert row["mass_msun_h"] == pytest.approx(m * mp), f"blob {i}: mass {row['mass_msun_h']}"
    assert np.all(np.diff(halos["mass_msun_h"]) <= 0), "halo table not sorted by mass"


def test_background_alone_gives_no_halos():
    pos, truth, *_ = _injected_catalogue()
    background = pos[truth == -1]
    halos = fof_halos(background, np.zeros_like(background), BOX_MPC_H, 1e12, b=0.2, min_particles=10)
    assert len(halos) == 0, f"uniform background gave {len(halos)} halos"


def test_labels_match_single_linkage():
    """FoF groups are single-linkage clusters cut at the linking length (scipy.cluster)."""
    rng = np.random.default_rng(11)
    # clustered points so that groups of many sizes form, some across the faces
    seeds = rng.uniform(0, BOX_MPC_H, size=(40, 3))
    pos = np.mod(seeds[rng.integers(0, 40, 600)] + rng.normal(scale=2.0, size=(600, 3)), BOX_MPC_H)
    ll = 1.5
    d = pos[:, None, :] - pos[None, :, :]
    d = np.mod(d + 0.5 * BOX_MPC_H, BOX_MPC_H) - 0.5 * BOX_MPC_H
    dist = np.linalg.norm(d, axis=2)
    reference = fcluster(linkage(squareform(dist, checks=False), method="single"), t=ll, criterion="distance")
    labels = fof_labels(pos, BOX_MPC_H, ll)
    # same partition: a one-to-one map between label sets
    pairs = set(zip(labels.tolist(), reference.tolist()))
    assert len(pairs) == len(set(labels.tolist())) == len(set(reference.tolist())), (
        f"{len(set(labels.tolist()))} FoF groups vs {len(set(reference.tolist()))} single-linkage clusters"
    )


@pytest.mark.parametrize("bad", [{"b": -0.2}, {"min_particles": 1}])
def test_bad_arguments_raise(bad):
    pos = np.random.default_rng(0).uniform(0, 10, size=(100, 3))
    with pytest.raises(ValueError, match=next(iter(bad))):
        fof_halos(pos, np.zeros_like(pos), 10.0, 1.0, **bad)
