"""XOD histogram counts against explicit counting of catalogue sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clustersbi.xod import XodBins, load_catalogue_csv, xod_from_csv, xod_histogram, xod_marginal


def _catalogue(n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"CR": 10 ** rng.uniform(-2.2, 0.3, n), "HR": rng.uniform(0.0, 2.0, n), "z": rng.uniform(0.05, 0.6, n)})


def _in_range(cat, bins):
    lcr = np.log10(cat["CR"])
    return int(
        ((lcr >= bins.log_cr[0]) & (lcr <= bins.log_cr[-1]) & (cat["HR"] >= bins.hr[0]) & (cat["HR"] <= bins.hr[-1]) & (cat["z"] >= bins.z[0]) & (cat["z"] <= bins.z[-1])).sum()
    )


def test_xod_counts_equal_sources_in_range():
    bins = XodBins.linear()
    cats = [_catalogue(400, s) for s in range(3)]  # three lightcones
    xod = xod_histogram(cats, bins)
    assert xod.shape == (8, 8, 8)
    expected = sum(_in_range(c, bins) for c in cats)
    assert xod.sum() == expected, f"{xod.sum()} vs {expected}"
    # one bin checked by hand
    c = pd.concat(cats)
    lcr = np.log10(c["CR"])
    sel = (lcr >= bins.log_cr[2]) & (lcr < bins.log_cr[3]) & (c["HR"] >= bins.hr[1]) & (c["HR"] < bins.hr[2]) & (c["z"] >= bins.z[4]) & (c["z"] < bins.z[5])
    assert xod[2, 1, 4] == sel.sum()


def test_marginals():
    bins = XodBins.linear()
    xod = xod_histogram(_catalogue(500, 9), bins)
    assert xod_marginal(xod, "cr_hr").shape == (8, 8)
    assert xod_marginal(xod, "z_cr").shape == (8, 8)
    np.testing.assert_array_equal(xod_marginal(xod, "z_cr")[3], xod[:, :, 3].sum(axis=1))
    np.testing.assert_array_equal(xod_marginal(xod, "z"), xod.sum(axis=(0, 1)))
    with pytest.raises(ValueError, match="marginal"):
        xod_marginal(xod, "hr")


def test_csv_loader_builds_same_xod(tmp_path):
    bins = XodBins.linear()
    cat = _catalogue(300, 4)
    cat.assign(extra=1).to_csv(tmp_path / "survey.csv", index=False)
    np.testing.assert_array_equal(xod_from_csv(tmp_path / "survey.csv", bins), xod_histogram(cat, bins))
    cat.drop(columns="HR").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="HR"):
        load_catalogue_csv(tmp_path / "bad.csv")


def test_nonfinite_rows_are_not_counted():
    bins = XodBins.linear()
    cat = pd.DataFrame({"CR": [0.1, 0.1, -1.0], "HR": [0.8, np.nan, 0.8], "z": [0.3, 0.3, 0.3]})
    assert xod_histogram(cat, bins).sum() == 1


def test_bins_from_config_spec_and_attrs():
    spec = {"log_cr": {"low": -2.0, "high": 0.5, "n": 5}, "hr": {"low": 0.1, "high": 2.0, "n": 4}, "z": {"low": 0.0, "high": 1.0, "n": 10}}
    bins = XodBins.from_spec(spec)
    np.testing.assert_array_equal(bins.log_cr, np.linspace(-2.0, 0.5, 6))
    np.testing.assert_array_equal(bins.hr, np.linspace(0.1, 2.0, 5))
    np.testing.assert_array_equal(bins.z, np.linspace(0.0, 1.0, 11))
    back = XodBins.from_attrs(bins.to_attrs())
    for axis in ("log_cr", "hr", "z"):
        np.testing.assert_array_equal(getattr(back, axis), getattr(bins, axis))
    with pytest.raises(ValueError, match="xod.bins.hr"):
        XodBins.from_spec({**spec, "hr": {"low": 1.0, "high": 1.0, "n": 4}})
