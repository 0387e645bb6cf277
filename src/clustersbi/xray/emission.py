"""X-ray emission of a hot, optically thin plasma, tabulated as band count rates on (T, z).

Convention (XSPEC normalisation; Cerardi et al., section 2.3). For a gas element of emission
measure EM = n_e n_H V [cm^-3] at redshift z and transverse comoving distance D_M [cm], the
count rate in an observer-frame band b is

    CR_b = EM r_b(T, z) / (4 pi D_M^2)                                              [cts/s]

    r_b(T, z) = 1/(1+z) sum_i A_b(E_i) int_{E_lo,i (1+z)}^{E_hi,i (1+z)} eps(E'; T) dE'
              = sum_i A_b(E_i) int_{E_lo,i}^{E_hi,i} eps(E (1+z); T) dE              [cts s^-1 cm^5]

with eps(E; T) the rest-frame photon emissivity per unit emission measure
[ph s^-1 cm^3 keV^-1] and A_b(E) the band's effective area [cm^2] over observed energy bins i
(see :mod:`clustersbi.xray.response`). The first form is how XSPEC folds a redshifted model:
the rest-frame photon rate over the blueshifted bin, divided by (1+z) for time dilation. Since
D_L = (1+z) D_M this equals the textbook K-corrected flux, F_E = (1+z) L_E((1+z)E) / (4 pi D_L^2),
integrated over observed energies (tested).

Backends for eps (all per unit n_e n_H, fully ionised plasma):

- ``bremsstrahlung``: thermal free-free emission of H + He (Rybicki & Lightman 1979, eq. 5.14b)
  with the Born-approximation velocity-averaged Gaunt factor. No line emission, no
  recombination or two-photon continuum, no metals: at Z = 0.3 solar this underestimates the
  0.5-2 keV photon rate by ~25% at kT = 0.5-1 keV, ~14% at 2 keV and ~5% at 5 keV (metals are
  mostly Fe-L lines near 1 keV), and shifts the hardness ratio.
- ``apec-emulator``: the APEC emulator whose weights ship with the PyPI package ``nnapec``
  (GPL-3 licensed weights; an MLP trained on XSPEC apec, kT 0.08-64 keV, abundance 0-5 solar).
  Lines included, offline.
- ``apec``: pyatomdb (Foster et al. 2012), the paper's choice, when AtomDB data files exist.

The table is computed once per configuration: :func:`compute_emission_table`.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ..constants import C_CM_S, E_ESU, H_ERG_S, HE_TO_H_NUMBER, K_B_ERG_K, K_B_KEV_PER_K, KEV_ERG, M_E_G
from scipy import special

from .response import Response, band_effective_area_cm2

__all__ = [
    "KEV_ERG",
    "K_B_KEV_PER_K",
    "HE_ABUNDANCE_AG89",
    "RL_BREMS_PREFACTOR_CGS",
    "gaunt_ff_born",
    "bremsstrahlung_emissivity_erg_s_cm3_hz",
    "BremsstrahlungBackend",
    "ApecEmulatorBackend",
    "ApecBackend",
    "make_backend",
    "EmissionTable",
    "observed_band_rates",
    "compute_emission_table",
]

log = logging.getLogger(__name__)

#: n_He / n_H of the Anders & Grevesse (1989) solar mixture (AtomDB's and XSPEC's default,
#: hence APEC's). Not the chain's gas: that is primordial, :data:`clustersbi.constants.HE_TO_H_NUMBER`.
HE_ABUNDANCE_AG89 = 0.0977

#: 2^5 pi e^6 / (3 m c^3) * sqrt(2 pi / (3 k m)) [cgs]: the coefficient of R&L eq. 5.14b
#: (quoted there as 6.8e-38).
RL_BREMS_PREFACTOR_CGS = (
    2.0**5 * np.pi * E_ESU**6 / (3.0 * M_E_G * C_CM_S**3) * np.sqrt(2.0 * np.pi / (3.0 * K_B_ERG_K * M_E_G))
)

Backend = Literal["bremsstrahlung", "apec-emulator", "apec"]


# ----------------------------------------------------------------------------- bremsstrahlung
def gaunt_ff_born(u: np.ndarray) -> np.ndarray:
    """Velocity-averaged free-free Gaunt factor in the Born approximation.

    g(u) = (sqrt(3)/pi) exp(u/2) K_0(u/2), u = h nu / kT (e.g. Rybicki & Lightman 1979,
    section 5.3; Karzas & Latter 1961). Exact in the limit gamma^2 = Z^2 Ry / kT -> 0, i.e.
    for cluster temperatures (gamma^2 ~ 0.01 for H at kT ~ 1 keV, where it differs from the
    exact non-relativistic Gaunt factor by a few per cent, van Hoof et al. 2014). Limits:
    g -> (sqrt(3)/pi) ln(4 / (zeta u)), zeta = exp(Euler gamma), for u << 1, and
    g -> sqrt(3/(pi u)) for u >> 1.

    Args:
        u: h nu / kT, any shape, > 0.
    """
    u = np.asarray(u, dtype=float)
    return np.sqrt(3.0) / np.pi * special.k0e(0.5 * u)


def bremsstrahlung_emissivity_erg_s_cm3_hz(
    nu_hz: np.ndarray,
    t_k: np.ndarray,
    z_ion: float = 1.0,
    n_e_cm3: float = 1.0,
    n_i_cm3: float = 1.0,
    gaunt: Literal["born", "unity"] = "born",
) -> np.ndarray:
    """Thermal bremsstrahlung emissivity eps_nu [erg s^-1 cm^-3 Hz^-1] (R&L eq. 5.14b).

    eps_nu = 2^5 pi e^6 / (3 m c^3) sqrt(2 pi / (3 k m)) Z^2 n_e n_i T^-1/2 exp(-h nu / kT) g_ff,
    the power emitted per unit volume and frequency into all directions.

    Args:
        nu_hz: frequencies [Hz] (broadcast against ``t_k``).
        t_k: temperatures [K].
        z_ion: ion charge Z.
        n_e_cm3, n_i_cm3: electron and ion densities [cm^-3].
        gaunt: ``born`` (:func:`gaunt_ff_born`) or ``unity`` (g_ff = 1).
    """
    nu = np.asarray(nu_hz, dtype=float)
    t = np.asarray(t_k, dtype=float)
    u = H_ERG_S * nu / (K_B_ERG_K * t)
    if gaunt == "born":
        g = gaunt_ff_born(u)
    elif gaunt == "unity":
        g = np.ones_like(u)
    else:
        raise ValueError(f"gaunt must be 'born' or 'unity', got {gaunt!r}")
    return RL_BREMS_PREFACTOR_CGS * z_ion**2 * n_e_cm3 * n_i_cm3 * np.exp(-u) * g / np.sqrt(t)


def _gauss_bin_integral(func, kt_kev: np.ndarray, e_edges_kev: np.ndarray, n_nodes: int = 6) -> np.ndarray:
    """Integrate func(E (n_e, n_nodes), kT (n_T, 1, 1)) over each energy bin (Gauss-Legendre)."""
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    lo, hi = e_edges_kev[:-1, None], e_edges_kev[1:, None]
    half = 0.5 * (hi - lo)
    nodes = lo + half * (x + 1.0)
    values = func(nodes[None], np.asarray(kt_kev, dtype=float)[:, None, None])
    return np.sum(values * (half * w)[None], axis=-1)


@dataclass(frozen=True)
class BremsstrahlungBackend:
    """Thermal bremsstrahlung of a fully ionised H + He plasma, per unit n_e n_H.

    n_e / n_H = 1 + 2 y and sum_i n_i Z_i^2 / n_H = 1 + 4 y with y = n_He / n_H, by default
    the chain's one composition (:mod:`clustersbi.constants`: primordial X_H = 0.76,
    y = 0.0789, n_e / n_H = 1.158, as the gas model). Metals are left out: fully ionised
    metals at 0.3 solar would add ~2% to sum n_i Z_i^2, and their lines (not modelled here)
    far more below 2 keV; see the module docstring.
    """

    he_abundance: float = HE_TO_H_NUMBER
    name: str = "bremsstrahlung"

    @property
    def ne_over_nh(self) -> float:
        return 1.0 + 2.0 * self.he_abundance

    def photon_spectrum(self, e_kev: np.ndarray, kt_kev: np.ndarray) -> np.ndarray:
        """eps(E; T) [ph s^-1 cm^3 keV^-1] per unit n_e n_H, broadcast over E and kT."""
        e = np.asarray(e_kev, dtype=float)
        kt = np.asarray(kt_kev, dtype=float)
        nu_hz = e * KEV_ERG / H_ERG_S
        eps_nu = bremsstrahlung_emissivity_erg_s_cm3_hz(nu_hz, kt / K_B_KEV_PER_K)
        z2_sum = 1.0 + 4.0 * self.he_abundance
        # per Hz -> per keV (dnu/dE = keV/h), energy -> photons (divide by E in erg)
        return eps_nu * z2_sum * (KEV_ERG / H_ERG_S) / (e * KEV_ERG)

    def binned_spectrum(self, kt_kev: np.ndarray, e_edges_kev: np.ndarray) -> np.ndarray:
        """Photon rate per bin [ph s^-1 cm^3], shape (n_T, n_bins), per unit n_e n_H."""
        return _gauss_bin_integral(self.photon_spectrum, np.atleast_1d(kt_kev), np.asarray(e_edges_kev, float))


# ----------------------------------------------------------------------------- APEC emulator
def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as torch.nn.GELU's default."""
    return 0.5 * x * (1.0 + special.erf(x / np.sqrt(2.0)))


def _find_nnapec_weights() -> Path:
    spec = importlib.util.find_spec("nnapec")  # locate without importing: its imports fail
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the 'apec-emulator' emission backend needs the PyPI package 'nnapec' (GPL-3), which "
            "ships the emulator weights: `pip install --no-deps nnapec` (h5py is needed to read them)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "nn_apec.h5"
    if not path.exists():
        raise ImportError(f"package 'nnapec' is installed but its weights file {path.name} is missing")
    return path


class ApecEmulatorBackend:
    """APEC emulator (MLP weights of the PyPI package nnapec), evaluated in numpy.

    The network maps standardised (abundance, kT) to 2000 means and 2000 log-sigmas; the
    spectrum is 10**(mean * value_scale + value_shift) on 2000 log-spaced energies
    (0.01-50 keV): XSPEC ``apec`` with norm = 1, z = 0, i.e. 1e14 times the photon rate per
    unit n_e n_H. Valid for abundance 0-5 solar and kT 0.08-64 keV. Each output value is a
    photon flux density [ph cm^-2 s^-1 keV^-1] at its energy: at kT = 8 keV, Z = 0, 3-6 keV
    it is 1.10 times the H + He bremsstrahlung continuum of :class:`BremsstrahlungBackend`
    with APEC's (AG89) helium, 1.16 times that with the chain's primordial helium (a per-bin
    reading would be off by a factor ~60; tested). It is integrated over log-spaced bins
    centred (geometrically) on the energies.
    """

    name = "apec-emulator"

    def __init__(self, weights_path: str | os.PathLike | None = None) -> None:
        import h5py

        path = Path(weights_path) if weights_path is not None else _find_nnapec_weights()
        with h5py.File(path, "r") as f:
            sd = f["state_dict"]
            idx = sorted(int(k.split(".")[2]) for k in sd if k.endswith(".weight"))
            self._layers = [
                (np.asarray(sd[f"layers.layers.{i}.weight"], float), np.asarray(sd[f"layers.layers.{i}.bias"], float))
                for i in idx
            ]
            tr = f["transformer"]
            self.energies_kev = np.asarray(tr["energies"], float)
            self._param_shift = np.asarray(tr["param_shift"], float)
            self._param_scale = np.asarray(tr["param_scale"], float)
            self.param_min = np.asarray(tr["param_min"], float)
            self.param_max = np.asarray(tr["param_max"], float)
            self._value_scale = np.asarray(tr["value_scale"], float)
            self._value_shift = np.asarray(tr["value_shift"], float)
            order = [tr.attrs["par_0"], tr.attrs["par_1"]]
        order = [o.decode() if isinstance(o, bytes) else str(o) for o in order]
        if order != ["abund", "kT"]:
            raise ValueError(f"unexpected emulator parameter order {order} in {path}")
        log_e = np.log(self.energies_kev)
        mid = 0.5 * (log_e[1:] + log_e[:-1])
        self.edges_kev = np.exp(np.concatenate([[2 * log_e[0] - mid[0]], mid, [2 * log_e[-1] - mid[-1]]]))

    def xspec_spectrum(self, abundance: float, kt_kev: np.ndarray) -> np.ndarray:
        """XSPEC apec (norm = 1) at the native energies [ph cm^-2 s^-1 keV^-1], shape (n_T, 2000)."""
        kt = np.atleast_1d(np.asarray(kt_kev, dtype=float))
        if np.any(kt < self.param_min[1] * 0.999) or np.any(kt > self.param_max[1] * 1.001):
            raise ValueError(f"kt_kev outside the emulator range [{self.param_min[1]:.3g}, {self.param_max[1]:.3g}] keV")
        if not self.param_min[0] * 0.0 <= abundance <= self.param_max[0] * 1.001:
            raise ValueError(f"abundance {abundance} outside the emulator range [0, {self.param_max[0]:.3g}]")
        params = np.stack([np.full_like(kt, abundance), kt], axis=-1)
        h = (params - self._param_shift) / self._param_scale
        for i, (w, b) in enumerate(self._layers):
            h = h @ w.T + b
            if i < len(self._layers) - 1:
                h = _gelu(h)
        n = self.energies_kev.size
        return 10.0 ** (h[:, :n] * self._value_scale + self._value_shift)

    def binned_spectrum_native(self, kt_kev: np.ndarray, abundance: float) -> np.ndarray:
        """Photon rate per native bin [ph s^-1 cm^3] per unit n_e n_H, shape (n_T, 2000)."""
        return 1e-14 * self.xspec_spectrum(abundance, kt_kev) * np.diff(self.edges_kev)


# ----------------------------------------------------------------------------- pyatomdb
def _find_atomdb_files(atomdb_dir: str | os.PathLike | None) -> tuple[Path, Path]:
    root = atomdb_dir if atomdb_dir is not None else os.environ.get("ATOMDB")
    if not root:
        raise FileNotFoundError(
            "the 'apec' emission backend needs AtomDB data: set $ATOMDB (or xray.atomdb_dir) to a directory "
            "holding apec_line.fits and apec_coco.fits (https://www.atomdb.org), or use the "
            "'apec-emulator' or 'bremsstrahlung' backend"
        )
    root = Path(root)
    found = []
    for kind in ("line", "coco"):
        candidates = [root / f"apec_{kind}.fits"] + sorted(Path(p) for p in glob.glob(str(root / f"apec_v*_{kind}.fits")))
        existing = [c for c in candidates if c.exists()]
        if not existing:
            raise FileNotFoundError(f"AtomDB directory {root} has no apec_{kind}.fits (nor apec_v*_{kind}.fits)")
        found.append(existing[0])
    if not (root / "userdata").exists():
        raise FileNotFoundError(
            f"AtomDB directory {root} has no 'userdata' file; without it `import pyatomdb` asks questions on "
            "stdin (create it once interactively, or copy one from an AtomDB installation)"
        )
    return found[0], found[1]


class ApecBackend:
    """APEC through pyatomdb's ``CIESession`` with explicit line/continuum files.

    Elements H to Zn (1-30) with Anders & Grevesse (1989) abundances, metals (Z >= 3) scaled
    to ``metallicity`` solar. ``return_spectrum`` gives ph cm^3 s^-1 per bin per unit n_e n_H.
    pyatomdb is imported only here, after the data files are found (its import otherwise
    prompts on stdin).
    """

    name = "apec"

    def __init__(self, metallicity: float, atomdb_dir: str | os.PathLike | None = None) -> None:
        line, coco = _find_atomdb_files(atomdb_dir)
        os.environ["ATOMDB"] = str(line.parent)
        import pyatomdb  # noqa: PLC0415 - lazy on purpose

        self._session = pyatomdb.spectrum.CIESession(
            linefile=str(line), cocofile=str(coco), elements=list(range(1, 31)), abundset="AG89"
        )
        self._session.set_abund(list(range(3, 31)), metallicity)
        self._edges = None

    def binned_spectrum(self, kt_kev: np.ndarray, e_edges_kev: np.ndarray) -> np.ndarray:
        """Photon rate per bin [ph s^-1 cm^3] per unit n_e n_H, shape (n_T, n_bins)."""
        edges = np.asarray(e_edges_kev, dtype=float)
        if self._edges is None or not np.array_equal(self._edges, edges):
            self._session.set_response(edges, raw=True)
            self._edges = edges
        return np.stack([np.asarray(self._session.return_spectrum(float(kt), teunit="keV")) for kt in np.atleast_1d(kt_kev)])


def make_backend(
    backend: Backend,
    metallicity: float = 0.3,
    atomdb_dir: str | os.PathLike | None = None,
    he_abundance: float = HE_TO_H_NUMBER,
):
    """Build an emission backend by name (see the module docstring)."""
    if backend == "bremsstrahlung":
        return BremsstrahlungBackend(he_abundance=he_abundance)
    if backend == "apec-emulator":
        return ApecEmulatorBackend()
    if backend == "apec":
        return ApecBackend(metallicity=metallicity, atomdb_dir=atomdb_dir)
    raise ValueError(f"xray.emission backend must be 'bremsstrahlung', 'apec-emulator' or 'apec', got {backend!r}")


# ----------------------------------------------------------------------------- band rates
def _rest_cumulative(backend, kt_kev: np.ndarray, metallicity: float, rest_edges_kev: np.ndarray):
    """Cumulative rest-frame photon rate C(E) [ph s^-1 cm^3] on bin edges, shape (n_T, n_edges)."""
    if isinstance(backend, ApecEmulatorBackend):
        edges = backend.edges_kev
        per_bin = backend.binned_spectrum_native(kt_kev, metallicity)
    else:
        edges = rest_edges_kev
        per_bin = backend.binned_spectrum(kt_kev, edges)
    cum = np.concatenate([np.zeros((per_bin.shape[0], 1)), np.cumsum(per_bin, axis=1)], axis=1)
    return edges, cum


def observed_band_rates(
    rest_edges_kev: np.ndarray,
    rest_cumulative: np.ndarray,
    z: Sequence[float],
    obs_edges_kev: np.ndarray,
    band_area_cm2: np.ndarray,
) -> np.ndarray:
    """r_b(T, z) [cts s^-1 cm^5] from a rest-frame cumulative photon rate (module eq.).

    Args:
        rest_edges_kev: (n_r + 1,) rest-frame energy edges.
        rest_cumulative: (n_T, n_r + 1) cumulative photon rate per unit EM at those edges
            [ph s^-1 cm^3]; interpolated linearly (flat spectrum within a rest bin).
        z: (n_z,) redshifts.
        obs_edges_kev: (n_e + 1,) observed energy edges of the response.
        band_area_cm2: (n_b, n_e) effective area of each band per observed bin.

    Returns:
        (n_b, n_T, n_z) array.
    """
    z = np.asarray(z, dtype=float)
    out = np.empty((band_area_cm2.shape[0], rest_cumulative.shape[0], z.size))
    for k, zk in enumerate(z):
        shifted = obs_edges_kev * (1.0 + zk)
        if shifted[-1] > rest_edges_kev[-1] or shifted[0] < rest_edges_kev[0]:
            raise ValueError(f"rest-frame spectrum grid does not cover the response at z = {zk}")
        cum = np.stack([np.interp(shifted, rest_edges_kev, c) for c in rest_cumulative])
        photons_per_obs_bin = np.diff(cum, axis=1) / (1.0 + zk)  # (n_T, n_e)
        out[:, :, k] = band_area_cm2 @ photons_per_obs_bin.T
    return out


@dataclass(frozen=True)
class EmissionTable:
    """Band count rates per unit emission measure on a (T, z) grid.

    Attributes:
        kt_kev: (n_T,) temperatures [keV], increasing (log-spaced by default).
        z: (n_z,) redshifts, increasing.
        bands_kev: (n_b, 2) observed bands [keV].
        rate: (n_b, n_T, n_z) r_b(T, z) [cts s^-1 cm^5]; CR = EM r / (4 pi D_M^2).
        metadata: backend, metallicity, response name, ...
    """

    kt_kev: np.ndarray
    z: np.ndarray
    bands_kev: np.ndarray
    rate: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __call__(self, kt_kev: np.ndarray, z: np.ndarray | float) -> np.ndarray:
        """Interpolate r_b at (kT, z), bilinear in (log kT, z) of log r.

        Below the table's lowest kT the rate is 0 (the 0.5-2 keV emission of gas colder than
        ~0.08 keV is < 0.3% of that at 1 keV); above its highest kT, the last value is used.

        Args:
            kt_kev: temperatures [keV], any shape.
            z: redshifts, broadcastable to ``kt_kev``, inside the table's range.

        Returns:
            (n_b, *shape) rates [cts s^-1 cm^5].
        """
        kt = np.asarray(kt_kev, dtype=float)
        zz = np.broadcast_to(np.asarray(z, dtype=float), kt.shape)
        if np.any(zz < self.z[0] - 1e-9) or np.any(zz > self.z[-1] + 1e-9):
            raise ValueError(f"z outside the emission table range [{self.z[0]}, {self.z[-1]}]: extend xray.table.z")
        lt = np.log(np.clip(kt, self.kt_kev[0], self.kt_kev[-1]))
        lgrid = np.log(self.kt_kev)
        i = np.clip(np.searchsorted(lgrid, lt, side="right") - 1, 0, lgrid.size - 2)
        ft = (lt - lgrid[i]) / (lgrid[i + 1] - lgrid[i])
        if self.z.size > 1:
            j = np.clip(np.searchsorted(self.z, zz, side="right") - 1, 0, self.z.size - 2)
            fz = (zz - self.z[j]) / (self.z[j + 1] - self.z[j])
        else:
            j = np.zeros(kt.shape, dtype=int)
            fz = np.zeros(kt.shape)
        logr = np.log(np.maximum(self.rate, 1e-300))
        jp = np.minimum(j + 1, self.z.size - 1)
        val = (
            (1 - ft) * (1 - fz) * logr[:, i, j]
            + ft * (1 - fz) * logr[:, i + 1, j]
            + (1 - ft) * fz * logr[:, i, jp]
            + ft * fz * logr[:, i + 1, jp]
        )
        return np.where(kt >= self.kt_kev[0], np.exp(val), 0.0)

    def to_h5(self, group) -> None:
        """Write into an open h5py group (datasets + JSON-encoded metadata attributes)."""
        from ..io import h5_write_attrs

        for name in ("kt_kev", "z", "bands_kev", "rate"):
            group.create_dataset(name, data=getattr(self, name))
        h5_write_attrs(group, self.metadata)

    @classmethod
    def from_h5(cls, group) -> "EmissionTable":
        from ..io import h5_read_attrs

        return cls(**{n: np.asarray(group[n]) for n in ("kt_kev", "z", "bands_kev", "rate")}, metadata=h5_read_attrs(group))


def compute_emission_table(
    response: Response,
    backend: Backend = "bremsstrahlung",
    bands_kev: Sequence[Sequence[float]] = ((0.5, 1.0), (1.0, 2.0)),
    metallicity: float = 0.3,
    kt_kev: np.ndarray | None = None,
    z: np.ndarray | None = None,
    atomdb_dir: str | os.PathLike | None = None,
    he_abundance: float = HE_TO_H_NUMBER,
) -> EmissionTable:
    """Tabulate r_b(T, z) (module equation) once per configuration.

    Args:
        response: the instrument response (effective area, optional redistribution,
            absorption already applied if wanted).
        backend: ``bremsstrahlung``, ``apec-emulator`` or ``apec``.
        bands_kev: observed bands [keV], (n_b, 2).
        metallicity: metal abundance relative to Anders & Grevesse (1989) solar (ignored by
            ``bremsstrahlung``, which has no metals).
        kt_kev: (n_T,) temperature grid [keV]; default 64 log-spaced points in 0.08-64 keV.
        z: (n_z,) redshift grid; default 0-1 in steps of 0.025.
        atomdb_dir: AtomDB directory for ``apec`` (default ``$ATOMDB``).
        he_abundance: n_He/n_H for ``bremsstrahlung`` (default the chain's gas composition,
            :data:`clustersbi.constants.HE_TO_H_NUMBER`).

    Returns:
        :class:`EmissionTable`.
    """
    bands = np.asarray(bands_kev, dtype=float).reshape(-1, 2)
    if np.any(bands[:, 1] <= bands[:, 0]) or np.any(bands <= 0):
        raise ValueError(f"xray.bands_kev must be increasing positive pairs, got {bands.tolist()}")
    kt = np.geomspace(0.08, 64.0, 64) if kt_kev is None else np.asarray(kt_kev, dtype=float)
    zz = np.round(np.arange(0.0, 1.0 + 1e-9, 0.025), 6) if z is None else np.asarray(z, dtype=float)
    if np.any(np.diff(kt) <= 0) or np.any(kt <= 0):
        raise ValueError("xray.table.kt_kev must be positive and increasing")
    if np.any(np.diff(zz) <= 0) or np.any(zz < 0):
        raise ValueError("xray.table.z must be non-negative and increasing")
    impl = make_backend(backend, metallicity=metallicity, atomdb_dir=atomdb_dir, he_abundance=he_abundance)
    area = np.stack([band_effective_area_cm2(response, b) for b in bands])
    obs_edges = response.energy_edges_kev
    # fine rest-frame grid covering the response blueshifted to the highest z (0.1% log steps)
    lo = obs_edges[0] * 0.999
    hi = obs_edges[-1] * (1.0 + zz[-1]) * 1.001
    rest_edges = np.geomspace(lo, hi, int(np.ceil(np.log(hi / lo) / np.log1p(1e-3))) + 1)
    log.info("emission table: backend=%s, %d temperatures x %d redshifts x %d bands", backend, kt.size, zz.size, len(bands))
    edges, cum = _rest_cumulative(impl, kt, metallicity, rest_edges)
    rate = observed_band_rates(edges, cum, zz, obs_edges, area)
    meta = {
        "backend": backend,
        "metallicity_solar": metallicity if backend != "bremsstrahlung" else 0.0,
        "he_abundance": he_abundance,
        "response": response.name,
        "units": "cts s^-1 cm^5 per unit n_e n_H V; CR = EM r / (4 pi D_M^2)",
    }
    return EmissionTable(kt_kev=kt, z=zz, bands_kev=bands, rate=rate, metadata=meta)
