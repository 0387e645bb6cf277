"""The cutout HDF5 format: round trip, validation errors that name the dataset."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from clustersbi.cutouts import (
    CutoutFormatError,
    Cutouts,
    parse_xray_channel,
    read_cutouts,
    write_cutouts,
    xray_channel_name,
)


def _toy(n=5, npix=8, seed=0):
    rng = np.random.default_rng(seed)
    images = {
        xray_channel_name(0.5, 1.2): rng.poisson(3.0, (n, npix, npix)),
        xray_channel_name(1.2, 2): rng.poisson(2.0, (n, npix, npix)),
        xray_channel_name(2, 7): rng.poisson(1.0, (n, npix, npix)),
        "y": rng.random((n, npix, npix)) * 1e-5,
        "mass": rng.random((n, npix, npix)) * 1e12,
    }
    return Cutouts(
        images=images, pixel_kpc=20.0, cluster_id=np.arange(n) // 3, view=np.arange(n) % 3,
        region=np.arange(n) % 2, redshift=np.full(n, 0.2), M500c=np.logspace(13, 15, n),
        M200c=1.4 * np.logspace(13, 15, n), R500c_kpc=np.linspace(400, 1400, n),
        R200c_kpc=1.5 * np.linspace(400, 1400, n), exposure_s=np.full(n, 1e4),
        position=rng.random((n, 3)) * 100, source="generator",
    )


def test_channel_names_round_trip():
    assert xray_channel_name(0.5, 1.2) == "xray_0.5-1.2"
    assert xray_channel_name(2.0, 7.0) == "xray_2-7"
    assert parse_xray_channel("xray_1.2-2") == (1.2, 2.0)


def test_write_read_round_trip(tmp_path):
    cut = _toy()
    path = tmp_path / "c.h5"
    write_cutouts(path, cut)
    back = read_cutouts(path)
    assert back.channels == ["xray_0.5-1.2", "xray_1.2-2", "xray_2-7", "y", "mass"]
    assert back.bands_kev == [(0.5, 1.2), (1.2, 2.0), (2.0, 7.0)]
    assert back.npix == 8 and back.n == 5 and back.source == "generator"
    for name in cut.channels:
        np.testing.assert_array_equal(back.images[name], cut.images[name].astype(np.float32))
    np.testing.assert_array_equal(back.cluster_id, cut.cluster_id)
    np.testing.assert_allclose(back.M500c, cut.M500c)
    np.testing.assert_allclose(back.position, cut.position)
    with h5py.File(path) as h5:
        assert h5.attrs["format_version"] == 1 and h5["images/y"].dtype == np.float32
    sub = back.select(back.region == 1)
    assert sub.n == 2 and sub.images["mass"].shape == (2, 8, 8)
    assert sub.stack(["y", "mass"]).shape == (2, 2, 8, 8)


def test_per_cutout_pixel_scale_and_sky_positions(tmp_path):
    cut = _toy()
    cut.pixel_kpc = np.linspace(10, 30, cut.n)
    cut.position, cut.ra_deg, cut.dec_deg = None, np.linspace(0, 1, cut.n), np.linspace(-1, 0, cut.n)
    write_cutouts(tmp_path / "c.h5", cut)
    back = read_cutouts(tmp_path / "c.h5")
    np.testing.assert_allclose(back.pixel_kpc_array(), np.linspace(10, 30, 5))
    assert back.position is None and np.allclose(back.dec_deg, np.linspace(-1, 0, 5))


def test_missing_dataset_is_named(tmp_path):
    path = tmp_path / "c.h5"
    write_cutouts(path, _toy())
    with h5py.File(path, "a") as h5:
        del h5["R500c_kpc"]
    with pytest.raises(CutoutFormatError, match=r"c\.h5.*missing dataset R500c_kpc"):
        read_cutouts(path)
    write_cutouts(path, _toy())
    with h5py.File(path, "a") as h5:
        del h5["images/y"]
    with pytest.raises(CutoutFormatError, match=r"images/y"):
        read_cutouts(path)


def test_shape_errors_are_named():
    cut = _toy()
    with pytest.raises(CutoutFormatError, match="dataset M500c"):
        Cutouts(**{**cut.__dict__, "M500c": cut.M500c[:3]})
    bad_images = dict(cut.images, y=cut.images["y"][:, :4, :4])
    with pytest.raises(CutoutFormatError, match="images/y"):
        Cutouts(**{**cut.__dict__, "images": bad_images})
    with pytest.raises(CutoutFormatError, match="no position"):
        Cutouts(**{**cut.__dict__, "position": None})
