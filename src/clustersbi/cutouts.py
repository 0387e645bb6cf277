"""Cluster cutouts: the one HDF5 format the image analyses read (mass CNN, U-Net mass maps).

A cutout set is N square images of galaxy clusters in several channels, with each cluster's
true masses and radii. It can come from the semi-analytic generator
(:mod:`clustersbi.cluster_images`), from our own simulations, or from a user's hydrodynamical
cutouts (Magneticum, The Three Hundred, ...) converted to this layout.

File layout (``format_version`` 1), e.g. ``results/images/cutouts.h5``::

    attributes
      npix            int     square images of npix x npix pixels
      pixel_kpc       float   physical kpc per pixel at the cluster; when it varies between
                              cutouts, omit the attribute and give a dataset ``pixel_kpc`` (N,)
      channels        [str]   channel names, the members of ``images/``, in order
      bands_kev       [[lo, hi], ...]  energy bands of the X-ray channels, in their order
      source          str     "generator", "simulation" or "user"
      format_version  int     1
    images/<channel>  float32 (N, npix, npix)
        xray_<lo>-<hi>  photon counts per pixel in that band (``xray_0.5-1.2``, ``xray_1.2-2``,
                        ``xray_2-7``; band edges written with ``%g``)
        y               Compton-y per pixel (dimensionless)
        mass            projected total mass per pixel [Msun/h]
        stellar         (optional) projected stellar mass per pixel [Msun/h]
    per-cutout datasets, shape (N,)
        cluster_id  int64   one cluster seen along several views shares its id
        view        int     projection index (0, 1, 2)
        region      int     sky region or simulation volume; spatial cross-validation folds
                            group cutouts by it, so neighbours never straddle train and test
        redshift    float
        M500c, M200c        [Msun/h]
        R500c_kpc, R200c_kpc  [physical kpc]
        exposure_s  float   [s]
    position          (N, 3) comoving [Mpc/h]; or, for lightcone sources, ``ra_deg`` and
                      ``dec_deg`` (N,) (the redshift is the third coordinate)
    extras/<name>     (optional) any per-cutout array with leading dimension N that is not an
                      input channel, e.g. the generator's noise-free ``icm_counts`` and
                      ``agn_counts`` (expected counts per pixel, all bands) for the saliency
                      studies, ``cool_core`` flags

:func:`read_cutouts` and :func:`write_cutouts` (atomic) validate the layout and name the
missing or malformed dataset.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Sequence

import h5py
import numpy as np

from .io import atomic_path

__all__ = [
    "FORMAT_VERSION",
    "SOURCES",
    "PER_CUTOUT",
    "Cutouts",
    "CutoutFormatError",
    "xray_channel_name",
    "parse_xray_channel",
    "concatenate_cutouts",
    "read_cutouts",
    "write_cutouts",
]

FORMAT_VERSION = 1
SOURCES = ("generator", "simulation", "user")
#: per-cutout 1D datasets and their dtypes
PER_CUTOUT: dict[str, type] = {
    "cluster_id": np.int64,
    "view": np.int64,
    "region": np.int64,
    "redshift": np.float64,
    "M500c": np.float64,
    "M200c": np.float64,
    "R500c_kpc": np.float64,
    "R200c_kpc": np.float64,
    "exposure_s": np.float64,
}
#: channels that are not X-ray bands
OTHER_CHANNELS = ("y", "mass", "stellar")


class CutoutFormatError(ValueError):
    """A cutout file or object does not follow the format; the message names the dataset."""


def xray_channel_name(lo_kev: float, hi_kev: float) -> str:
    """Channel name of an X-ray band: ``xray_0.5-1.2`` for 0.5-1.2 keV."""
    return f"xray_{lo_kev:g}-{hi_kev:g}"


def parse_xray_channel(name: str) -> tuple[float, float]:
    """Band edges [keV] of an X-ray channel name (inverse of :func:`xray_channel_name`)."""
    if not name.startswith("xray_"):
        raise CutoutFormatError(f"channel {name!r} is not an X-ray channel (xray_<lo>-<hi>)")
    try:
        lo, hi = (float(v) for v in name[len("xray_"):].split("-"))
    except ValueError as exc:
        raise CutoutFormatError(f"channel {name!r}: expected xray_<lo>-<hi> with band edges in keV") from exc
    return lo, hi


@dataclass
class Cutouts:
    """N cluster cutouts in several channels (arrays in memory; see the module docstring).

    ``images``: channel name -> float32 array (N, npix, npix); X-ray channels are named by
    :func:`xray_channel_name` and listed, in order, with their bands in ``bands_kev``.
    ``pixel_kpc``: scalar or (N,) [physical kpc]. ``position`` (N, 3) [Mpc/h, comoving] or
    ``ra_deg``/``dec_deg`` (N,). Other per-cutout arrays are (N,) in the units of the format.
    """

    images: dict[str, np.ndarray]
    pixel_kpc: float | np.ndarray
    cluster_id: np.ndarray
    view: np.ndarray
    region: np.ndarray
    redshift: np.ndarray
    M500c: np.ndarray
    M200c: np.ndarray
    R500c_kpc: np.ndarray
    R200c_kpc: np.ndarray
    exposure_s: np.ndarray
    source: str = "user"
    position: np.ndarray | None = None
    ra_deg: np.ndarray | None = None
    dec_deg: np.ndarray | None = None
    extras: dict = field(default_factory=dict)  # name -> array (N, ...), not input channels
    attrs: dict = field(default_factory=dict)  # extra provenance (resolved config, seeds)

    def __post_init__(self) -> None:
        self.images = {k: np.asarray(v, dtype=np.float32) for k, v in self.images.items()}
        for name, dtype in PER_CUTOUT.items():
            setattr(self, name, np.asarray(getattr(self, name), dtype=dtype))
        if np.ndim(self.pixel_kpc) == 0:
            self.pixel_kpc = float(self.pixel_kpc)
        else:
            self.pixel_kpc = np.asarray(self.pixel_kpc, dtype=np.float64)
        for name in ("position", "ra_deg", "dec_deg"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        self.extras = {k: np.asarray(v) for k, v in self.extras.items()}
        self.validate()

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        """Number of cutouts."""
        return int(self.cluster_id.shape[0])

    @property
    def npix(self) -> int:
        """Pixels per side."""
        return int(next(iter(self.images.values())).shape[1])

    @property
    def channels(self) -> list[str]:
        """Channel names, X-ray bands first (in band order), then y, mass, stellar, others."""
        xray = sorted((c for c in self.images if c.startswith("xray_")), key=parse_xray_channel)
        rest = [c for c in OTHER_CHANNELS if c in self.images]
        rest += sorted(c for c in self.images if c not in xray and c not in OTHER_CHANNELS)
        return xray + rest

    @property
    def xray_channels(self) -> list[str]:
        return [c for c in self.channels if c.startswith("xray_")]

    @property
    def bands_kev(self) -> list[tuple[float, float]]:
        return [parse_xray_channel(c) for c in self.xray_channels]

    def pixel_kpc_array(self) -> np.ndarray:
        """Pixel scale of each cutout, (N,) [physical kpc]."""
        return np.broadcast_to(np.asarray(self.pixel_kpc, dtype=np.float64), (self.n,)).copy()

    def stack(self, channels: Sequence[str]) -> np.ndarray:
        """Images of ``channels`` stacked as (N, C, npix, npix) float32; names a missing channel."""
        missing = [c for c in channels if c not in self.images]
        if missing:
            raise CutoutFormatError(f"cutouts have no channel(s) {missing}; present: {self.channels}")
        return np.stack([self.images[c] for c in channels], axis=1)

    def select(self, index) -> "Cutouts":
        """The cutouts at ``index`` (boolean mask or integer indices), as a new object."""
        index = np.asarray(index)
        kwargs = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("images", "extras"):
                value = {k: v[index] for k, v in value.items()}
            elif f.name == "pixel_kpc":
                value = value if np.ndim(value) == 0 else value[index]
            elif isinstance(value, np.ndarray):
                value = value[index]
            kwargs[f.name] = value
        return Cutouts(**kwargs)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`CutoutFormatError` naming the first dataset that breaks the format."""
        if self.source not in SOURCES:
            raise CutoutFormatError(f"source {self.source!r} is not one of {SOURCES}")
        if not self.images:
            raise CutoutFormatError("images/: no channel")
        n = self.n
        for name in PER_CUTOUT:
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise CutoutFormatError(f"dataset {name}: shape {arr.shape}, expected ({n},) like cluster_id")
        shape0 = None
        for name, img in self.images.items():
            if name.startswith("xray_"):
                parse_xray_channel(name)
            if img.ndim != 3 or img.shape[0] != n or img.shape[1] != img.shape[2]:
                raise CutoutFormatError(f"images/{name}: shape {img.shape}, expected ({n}, npix, npix)")
            if shape0 is not None and img.shape != shape0:
                raise CutoutFormatError(f"images/{name}: shape {img.shape} differs from {shape0} of the other channels")
            shape0 = img.shape
            if not np.all(np.isfinite(img)):
                raise CutoutFormatError(f"images/{name}: non-finite pixels")
        if np.ndim(self.pixel_kpc) == 0:
            if not self.pixel_kpc > 0:
                raise CutoutFormatError(f"pixel_kpc: {self.pixel_kpc}, expected > 0")
        elif self.pixel_kpc.shape != (n,) or not np.all(self.pixel_kpc > 0):
            raise CutoutFormatError(f"dataset pixel_kpc: shape {self.pixel_kpc.shape}, expected ({n},) and > 0")
        if self.position is None and (self.ra_deg is None or self.dec_deg is None):
            raise CutoutFormatError("no position: give dataset position (N, 3) [Mpc/h] or ra_deg and dec_deg (N,)")
        if self.position is not None and self.position.shape != (n, 3):
            raise CutoutFormatError(f"dataset position: shape {self.position.shape}, expected ({n}, 3)")
        for name in ("ra_deg", "dec_deg"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise CutoutFormatError(f"dataset {name}: shape {arr.shape}, expected ({n},)")
        for name, arr in self.extras.items():
            if arr.ndim == 0 or arr.shape[0] != n:
                raise CutoutFormatError(f"dataset extras/{name}: shape {arr.shape}, expected leading dimension {n}")
        for name in ("M500c", "M200c", "R500c_kpc", "R200c_kpc"):
            if not np.all(getattr(self, name) > 0):
                raise CutoutFormatError(f"dataset {name}: non-positive values")


def concatenate_cutouts(parts: Sequence[Cutouts]) -> Cutouts:
    """One cutout set of ``parts`` in order (same channels, npix, source and optional datasets).

    ``pixel_kpc`` becomes (N,) when the parts' scales differ; ``attrs`` are the first part's.
    Raises :class:`CutoutFormatError` naming the first part that does not match the first.
    """
    if not parts:
        raise CutoutFormatError("no cutouts to concatenate")
    first = parts[0]
    for k, part in enumerate(parts[1:], start=1):
        if part.channels != first.channels or part.npix != first.npix:
            raise CutoutFormatError(f"part {k}: channels {part.channels} at {part.npix} pixels, "
                                    f"expected {first.channels} at {first.npix}")
        if part.source != first.source or sorted(part.extras) != sorted(first.extras):
            raise CutoutFormatError(f"part {k}: source {part.source!r}, extras {sorted(part.extras)} differ from part 0")
        for name in ("position", "ra_deg", "dec_deg"):
            if (getattr(part, name) is None) != (getattr(first, name) is None):
                raise CutoutFormatError(f"part {k}: dataset {name} present in some parts only")
    joined = {name: np.concatenate([getattr(p, name) for p in parts]) for name in PER_CUTOUT}
    for name in ("position", "ra_deg", "dec_deg"):
        joined[name] = None if getattr(first, name) is None else np.concatenate([getattr(p, name) for p in parts])
    scales = np.concatenate([p.pixel_kpc_array() for p in parts])
    return Cutouts(images={c: np.concatenate([p.images[c] for p in parts]) for c in first.images},
                   pixel_kpc=float(scales[0]) if np.all(scales == scales[0]) else scales,
                   source=first.source, extras={k: np.concatenate([p.extras[k] for p in parts]) for k in first.extras},
                   attrs=dict(first.attrs), **joined)


def write_cutouts(path: str | os.PathLike, cutouts: Cutouts) -> None:
    """Write ``cutouts`` to ``path`` in the cutout format (atomically; validated first)."""
    cutouts.validate()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["npix"] = cutouts.npix
            # native HDF5 arrays (strings, floats) so that any HDF5 tool shows them; the reader
            # also accepts the same lists written as JSON text
            h5.attrs["channels"] = np.array(cutouts.channels, dtype=h5py.string_dtype())
            h5.attrs["bands_kev"] = np.array(cutouts.bands_kev, dtype=np.float64).reshape(-1, 2)
            h5.attrs["source"] = cutouts.source
            h5.attrs["format_version"] = FORMAT_VERSION
            for key, value in cutouts.attrs.items():
                h5.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value, default=_tolist)
            if np.ndim(cutouts.pixel_kpc) == 0:
                h5.attrs["pixel_kpc"] = float(cutouts.pixel_kpc)
            else:
                h5.create_dataset("pixel_kpc", data=cutouts.pixel_kpc)
            grp = h5.create_group("images")
            for name in cutouts.channels:
                grp.create_dataset(name, data=cutouts.images[name], compression="gzip", compression_opts=4,
                                   chunks=(1, cutouts.npix, cutouts.npix))
            for name in PER_CUTOUT:
                h5.create_dataset(name, data=getattr(cutouts, name))
            for name in ("position", "ra_deg", "dec_deg"):
                if getattr(cutouts, name) is not None:
                    h5.create_dataset(name, data=getattr(cutouts, name))
            for name, arr in cutouts.extras.items():
                h5.create_dataset(f"extras/{name}", data=arr, compression="gzip" if arr.ndim > 1 else None)


def _tolist(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _attr_list(value):
    """A list attribute stored either as JSON text or as an HDF5 array of strings/numbers."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return json.loads(value)
    return [v.decode() if isinstance(v, bytes) else (v.tolist() if hasattr(v, "tolist") else v) for v in value]


def read_cutouts(path: str | os.PathLike) -> Cutouts:
    """Read and validate a cutout file; errors name the file and the missing dataset."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"cutout file {path} does not exist")
    try:
        with h5py.File(path, "r") as h5:
            for key in ("npix", "channels", "bands_kev", "source", "format_version"):
                if key not in h5.attrs:
                    raise CutoutFormatError(f"missing file attribute {key!r}")
            version = int(h5.attrs["format_version"])
            if version != FORMAT_VERSION:
                raise CutoutFormatError(f"format_version {version}; this reader knows {FORMAT_VERSION}")
            channels = [str(c) for c in _attr_list(h5.attrs["channels"])]
            bands = [tuple(float(x) for x in b) for b in _attr_list(h5.attrs["bands_kev"])]
            if "images" not in h5:
                raise CutoutFormatError("missing group images/")
            images = {}
            for name in channels:
                if name not in h5["images"]:
                    raise CutoutFormatError(f"missing dataset images/{name} (listed in attribute channels)")
                images[name] = h5["images"][name][...]
            xray = [c for c in channels if c.startswith("xray_")]
            if len(bands) != len(xray) or any(
                not np.allclose(parse_xray_channel(c), b) for c, b in zip(xray, bands)
            ):
                raise CutoutFormatError(f"attribute bands_kev {bands} does not match the X-ray channels {xray}")
            npix = int(h5.attrs["npix"])
            for name, img in images.items():
                if img.shape[1:] != (npix, npix):
                    raise CutoutFormatError(f"images/{name}: shape {img.shape}, attribute npix = {npix}")
            kwargs = {}
            for name in PER_CUTOUT:
                if name not in h5:
                    raise CutoutFormatError(f"missing dataset {name}")
                kwargs[name] = h5[name][...]
            if "pixel_kpc" in h5.attrs:
                pixel_kpc = float(h5.attrs["pixel_kpc"])
            elif "pixel_kpc" in h5:
                pixel_kpc = h5["pixel_kpc"][...]
            else:
                raise CutoutFormatError("missing pixel_kpc (file attribute, or dataset (N,) when it varies)")
            for name in ("position", "ra_deg", "dec_deg"):
                kwargs[name] = h5[name][...] if name in h5 else None
            kwargs["extras"] = {k: v[...] for k, v in h5["extras"].items()} if "extras" in h5 else {}
            known = {"npix", "channels", "bands_kev", "source", "format_version", "pixel_kpc"}
            extra = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items() if k not in known}
            return Cutouts(images=images, pixel_kpc=pixel_kpc, source=str(h5.attrs["source"]), attrs=extra, **kwargs)
    except CutoutFormatError as exc:
        raise CutoutFormatError(f"cutout file {path}: {exc}") from None
