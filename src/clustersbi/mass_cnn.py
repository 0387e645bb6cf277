"""Cluster masses from X-ray photon maps: the CNN of Ho et al. and its scalar-proxy baselines.

Following ``ho-xray-mass-cnn`` (sections 2-6):

- **Inputs.** Photon maps per band (multi-band) or their sum (single band). Counts are
  normalised for distance, n = m N0 / 10^(gamma z + eta) with (gamma, eta) fitted to
  log10 sum(m) = gamma z + eta on the training folds, N0 = 4000 (their eq. 1), then
  x = log10(n + 1) (their eq. 2).
- **Network** (:class:`MassCNN`, their section 4.1 after Ntampaka et al. 2019): conv 5x5 (24),
  conv 3x3 (10), max-pool 4, conv 5x5 (24), conv 3x3 (10), max-pool 2, dense 128, 128, 64, 1;
  ReLU; L2 weight regularisation 1e-4 (as Adam weight decay); Adam, learning rate 1e-3; MSE.
  It predicts ln M500c (standardised); ho predict log10 M500c, a constant factor apart.
  Convolutions are zero-padded ("same"): the paper does not say.
- **Cross-validation** by spatial folds (:func:`assign_folds`): whole sky regions (or
  simulation volumes) per fold, so that neighbours never straddle train and test; 10% of the
  training folds' clusters (all views of a cluster together) stop the training early.
- **Proxies** (their section 3, Evrard et al. 2014): <s | mu, z> = pi + alpha mu + gamma z for
  s = ln S, mu = ln(M500c / 1e14 Msun/h), fitted on the training folds (the z term stands in
  for their per-redshift-bin fits); with a local mass function n(mu) ∝ exp(-beta mu) the
  predictive mean and scatter are <mu | s> = (s - pi - gamma z)/alpha - beta sigma_s^2/alpha^2 and
  sigma_mu|s = sigma_s / |alpha| (their eqs. 6-7 for one observable). Test-fold predictions,
  as their Fig. 4, come from a power-law regression of ln M on ln S (and z) fitted on the
  training folds (:func:`fit_inverse_power_law`): eq. 6 assumes an untruncated exponential
  mass function, which a sample with a mass cut is not near the cut.
- **Residuals** eps = log10(M_pred / M500c) (their eq. 9): bias = mean, scatter = standard
  deviation [dex]; "%" = scatter x ln 10 (the scatter of ln M), as their Table 3.
- **Saliency** |d f / d x_ij| by back-propagation (their eq. 10); its mean in annuli of r/R500c,
  the N_phot proxy's closed form d mu / d x_ij = ln 10 10^x_ij / (alpha N) (their eq. 13), and
  the mean saliency over AGN- and ICM-dominated pixels (their eq. 14).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "MU_PIVOT_MSUN_H",
    "N0_PHOTONS",
    "assign_folds",
    "rebin_images",
    "CountNormalisation",
    "fit_count_normalisation",
    "transform_counts",
    "MassCNN",
    "CnnSettings",
    "train_mass_cnn",
    "predict",
    "saliency",
    "SEARCH_SPACE",
    "tune_mass_cnn",
    "PowerLawProxy",
    "fit_power_law_proxy",
    "InversePowerLaw",
    "fit_inverse_power_law",
    "mass_function_slope",
    "residual_statistics",
    "radial_profile",
    "mask_saliency",
    "aperture_sum",
]

MU_PIVOT_MSUN_H = 1e14
N0_PHOTONS = 4000.0


# ============================================================================ folds
def assign_folds(region: np.ndarray, n_folds: int) -> np.ndarray:
    """Fold of each cutout: its region's position among the sorted distinct regions, modulo n_folds.

    Every cutout of a region (and so every view of a cluster) lands in one fold. Raises when
    there are fewer regions than folds.
    """
    region = np.asarray(region)
    distinct = np.unique(region)
    if distinct.size < n_folds:
        raise ValueError(f"mass_cnn.n_folds = {n_folds} but the cutouts have only {distinct.size} regions")
    rank = np.searchsorted(distinct, region)
    return (rank % n_folds).astype(np.int64)


# ============================================================================ inputs
def rebin_images(images: np.ndarray, factor: int) -> np.ndarray:
    """Sum ``factor`` x ``factor`` pixel blocks of (..., H, W) images (photon counts are conserved)."""
    if factor == 1:
        return images
    h, w = images.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"mass_cnn.rebin = {factor} does not divide the {h} x {w} pixels")
    return images.reshape(*images.shape[:-2], h // factor, factor, w // factor, factor).sum(axis=(-3, -1))


@dataclass(frozen=True)
class CountNormalisation:
    """log10 sum(m) = gamma z + eta, fitted on training images (ho eq. 1)."""

    gamma: float
    eta: float
    n0: float = N0_PHOTONS


def fit_count_normalisation(counts: np.ndarray, z: np.ndarray) -> CountNormalisation:
    """Least-squares (gamma, eta) from images (N, C, H, W) [photons] and redshifts (N,)."""
    total = np.log10(np.maximum(counts.reshape(len(counts), -1).sum(1), 1.0))
    gamma, eta = np.polyfit(np.asarray(z, float), total, 1)
    return CountNormalisation(float(gamma), float(eta))


def transform_counts(counts: np.ndarray, z: np.ndarray, norm: CountNormalisation) -> np.ndarray:
    """x = log10(n + 1), n = m N0 / 10^(gamma z + eta) (ho eqs. 1-2); float32, same shape."""
    scale = norm.n0 / 10.0 ** (norm.gamma * np.asarray(z, float) + norm.eta)
    return np.log10(counts * scale.reshape(-1, *([1] * (counts.ndim - 1))) + 1.0).astype(np.float32)


# ============================================================================ network
class MassCNN(nn.Module):
    """Ho et al.'s CNN (module docstring) for ``n_channels`` x ``npix`` x ``npix`` inputs -> 1 output."""

    def __init__(self, n_channels: int, npix: int, filters: Sequence[int] = (24, 10, 24, 10), dense: Sequence[int] = (128, 128, 64)):
        super().__init__()
        if npix % 8:
            raise ValueError(f"MassCNN needs npix divisible by 8 (two poolings, 4 and 2), got {npix}")
        f1, f2, f3, f4 = filters
        self.features = nn.Sequential(
            nn.Conv2d(n_channels, f1, 5, padding=2), nn.ReLU(),
            nn.Conv2d(f1, f2, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(4),
            nn.Conv2d(f2, f3, 5, padding=2), nn.ReLU(),
            nn.Conv2d(f3, f4, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        layers: list[nn.Module] = []
        width = f4 * (npix // 8) ** 2
        for d in dense:
            layers += [nn.Linear(width, d), nn.ReLU()]
            width = d
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)


@dataclass(frozen=True)
class CnnSettings:
    """Training settings (config section ``mass_cnn``)."""

    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    max_epochs: int = 60
    patience: int = 10
    filters: tuple[int, int, int, int] = (24, 10, 24, 10)
    dense: tuple[int, ...] = (128, 128, 64)


def train_mass_cnn(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, settings: CnnSettings, seed: int,
    on_epoch=None,
) -> tuple[MassCNN, list[dict], tuple[float, float]]:
    """Fit a :class:`MassCNN` to targets y (ln M500c) with MSE on standardised y; early stopping on val.

    ``on_epoch(epoch, val_loss)``, if given, is called after every epoch (Optuna pruning).

    Returns:
        (the network at its best validation loss, history rows (epoch, train_loss, val_loss),
        (y mean, y std) of the standardisation; predictions are mean + std x output).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    y_mean, y_std = float(np.mean(y_train)), float(np.std(y_train) or 1.0)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(((y_train - y_mean) / y_std).astype(np.float32))
    xv, yv = torch.from_numpy(np.ascontiguousarray(x_val)), torch.from_numpy(((y_val - y_mean) / y_std).astype(np.float32))
    net = MassCNN(x_train.shape[1], x_train.shape[-1], settings.filters, settings.dense)
    opt = torch.optim.Adam(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    best, best_state, since, history = math.inf, None, 0, []
    for epoch in range(settings.max_epochs):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for start in range(0, len(xt), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            opt.zero_grad()
            loss = torch.mean((net(xt[idx]) - yt[idx]) ** 2)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        net.eval()
        with torch.no_grad():
            val = float(torch.mean((net(xv) - yv) ** 2)) if len(xv) else total / len(xt)
        history.append({"epoch": epoch, "train_loss": total / len(xt), "val_loss": val})
        if on_epoch is not None:
            on_epoch(epoch, val)
        if val < best - 1e-6:
            best, since = val, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            since += 1
            if since >= settings.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return net, history, (y_mean, y_std)


def predict(net: MassCNN, x: np.ndarray, standardisation: tuple[float, float], batch: int = 256) -> np.ndarray:
    """Predicted ln M500c of inputs x (N, C, H, W)."""
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            out.append(net(torch.from_numpy(np.ascontiguousarray(x[s:s + batch]))).numpy())
    return standardisation[0] + standardisation[1] * np.concatenate(out) if out else np.zeros(0)


def saliency(net: MassCNN, x: np.ndarray, standardisation: tuple[float, float]) -> np.ndarray:
    """|d ln M_pred / d x_ij| per input pixel (N, C, H, W) (ho eq. 10)."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
    out = net(xt).sum() * standardisation[1]
    (grad,) = torch.autograd.grad(out, xt)
    return grad.abs().numpy()


#: Optuna search space (TPE) of :func:`tune_mass_cnn`: Ho et al. fix their hyperparameters; these
#: ranges bracket them (learning rate 1e-3, L2 1e-4, batch 32, 24 filters, 128 dense units)
SEARCH_SPACE: dict[str, dict] = {
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "log2_batch_size": {"low": 4, "high": 7, "int": True},
    "n_filters": {"low": 8, "high": 48, "step": 8, "int": True},
    "dense_units": {"low": 32, "high": 256, "step": 32, "int": True},
}


def _settings_from_trial(base: CnnSettings, values: dict) -> CnnSettings:
    from dataclasses import replace

    kw = {}
    for key, val in values.items():
        if key == "log2_batch_size":
            kw["batch_size"] = 2 ** int(val)
        elif key == "n_filters":  # the wide convolutions; the 10-filter ones keep their ratio
            kw["filters"] = (int(val), max(1, round(val * 10 / 24)), int(val), max(1, round(val * 10 / 24)))
        elif key == "dense_units":  # Ho's 128, 128, 64 shape, scaled
            kw["dense"] = (int(val), int(val), max(1, int(val) // 2))
        elif key in ("learning_rate", "weight_decay"):
            kw[key] = float(val)
        else:
            raise ValueError(f"mass CNN search space: unknown key {key!r}; known: {sorted(SEARCH_SPACE)}")
    return replace(base, **kw)


def tune_mass_cnn(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, base: CnnSettings, seed: int,
    n_trials: int = 20, n_startup_trials: int = 5, search_space: dict | None = None,
) -> dict:
    """Optuna search (TPE sampler, median pruner) minimising the best validation MSE.

    Returns:
        {"best_params", "best_value", "n_trials", "n_pruned", "trials": [{number, params, value, state}]}.
    """
    import optuna

    space = dict(SEARCH_SPACE if search_space is None else search_space)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    study = optuna.create_study(direction="minimize", sampler=sampler,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials))

    def objective(trial) -> float:
        values = {}
        for k, spec in space.items():
            if spec.get("int", False):
                values[k] = trial.suggest_int(k, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)))
            else:
                values[k] = trial.suggest_float(k, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)))

        def report(epoch, val):
            trial.report(val, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        _, hist, _ = train_mass_cnn(x_train, y_train, x_val, y_val, _settings_from_trial(base, values), seed, on_epoch=report)
        return min(h["val_loss"] for h in hist)

    study.optimize(objective, n_trials=n_trials)
    return {
        "best_params": study.best_params, "best_value": study.best_value, "n_trials": len(study.trials),
        "n_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "trials": [{"number": t.number, "params": t.params, "value": t.value, "state": t.state.name} for t in study.trials],
    }


# ============================================================================ proxies
@dataclass(frozen=True)
class PowerLawProxy:
    """<ln S | mu, z> = pi + alpha mu + gamma z with scatter sigma_s; beta: the mass function slope."""

    pi: float
    alpha: float
    gamma: float
    sigma_s: float
    beta: float

    def predict_mu(self, ln_s: np.ndarray, z: np.ndarray) -> np.ndarray:
        """<mu | s> (ho eq. 6 for one observable)."""
        return (np.asarray(ln_s) - self.pi - self.gamma * np.asarray(z)) / self.alpha - self.beta * self.sigma_s**2 / self.alpha**2

    @property
    def predictive_scatter_ln(self) -> float:
        """sigma_mu|s = sigma_s / |alpha| (ho eq. 7)."""
        return self.sigma_s / abs(self.alpha)


@dataclass(frozen=True)
class InversePowerLaw:
    """ln M500c = a + b ln S + c z, fitted by least squares on training clusters.

    The regression Ho et al. evaluate on their test set (their section 4.2, Fig. 4): it
    estimates E[ln M | S, z] of the training sample itself, so its mean residual is ~0 even where
    the sample's mass cut breaks the local power-law mass function of :class:`PowerLawProxy`.
    """

    a: float
    b: float
    c: float

    def predict_ln_m(self, ln_s: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.a + self.b * np.asarray(ln_s) + self.c * np.asarray(z)


def fit_inverse_power_law(ln_s: np.ndarray, ln_m: np.ndarray, z: np.ndarray) -> InversePowerLaw:
    design = np.column_stack([np.ones_like(ln_s), ln_s, z])
    coef, *_ = np.linalg.lstsq(design, ln_m, rcond=None)
    return InversePowerLaw(*(float(c) for c in coef))


def mass_function_slope(mu: np.ndarray, lo: float | None = None, hi: float | None = None) -> float:
    """Maximum-likelihood beta of n(mu) ∝ exp(-beta mu) on [lo, hi] (default the sample's range)."""
    mu = np.asarray(mu, float)
    lo = float(mu.min()) if lo is None else lo
    hi = float(mu.max()) if hi is None else hi
    width, mean = hi - lo, float(np.mean(mu)) - lo

    def score(beta):  # d log L / d beta = 0: mean offset of a truncated exponential
        if abs(beta) < 1e-8:
            return width / 2.0 - mean
        return 1.0 / beta - width / math.expm1(beta * width) - mean

    a, b = -50.0 / width, 50.0 / width
    for _ in range(200):
        m = 0.5 * (a + b)
        a, b = (m, b) if score(m) > 0 else (a, m)
    return 0.5 * (a + b)


def fit_power_law_proxy(ln_s: np.ndarray, mu: np.ndarray, z: np.ndarray, beta: float | None = None) -> PowerLawProxy:
    """Least-squares fit of <ln S | mu, z> on training clusters (module docstring)."""
    design = np.column_stack([np.ones_like(mu), mu, z])
    coef, *_ = np.linalg.lstsq(design, ln_s, rcond=None)
    resid = ln_s - design @ coef
    sigma = float(np.sqrt(np.sum(resid**2) / max(len(ln_s) - 3, 1)))
    return PowerLawProxy(float(coef[0]), float(coef[1]), float(coef[2]), sigma, mass_function_slope(mu) if beta is None else beta)


# ============================================================================ metrics
def residual_statistics(ln_m_pred: np.ndarray, ln_m_true: np.ndarray) -> dict[str, float]:
    """Bias and scatter of eps = log10(M_pred / M) [dex], scatter in % (= dex x ln 10 x 100)."""
    eps = (np.asarray(ln_m_pred) - np.asarray(ln_m_true)) / np.log(10.0)
    scatter = float(np.std(eps, ddof=1)) if eps.size > 1 else float("nan")
    return {"bias_dex": float(np.mean(eps)), "scatter_dex": scatter, "scatter_pct": scatter * np.log(10.0) * 100.0, "n": int(eps.size)}


def _pixel_radius(npix: int) -> np.ndarray:
    c = np.arange(npix) + 0.5 - npix / 2.0
    return np.hypot(*np.meshgrid(c, c))


def aperture_sum(images: np.ndarray, radius_pix: np.ndarray | float | None = None) -> np.ndarray:
    """Sum of each image (N, H, W) within a projected radius [pixels] (None: the whole image)."""
    if radius_pix is None:
        return images.reshape(len(images), -1).sum(1)
    r = _pixel_radius(images.shape[-1])
    mask = r[None] < np.broadcast_to(np.asarray(radius_pix, float), (len(images),))[:, None, None]
    return (images * mask).reshape(len(images), -1).sum(1)


def radial_profile(maps: np.ndarray, r500_pix: np.ndarray, edges_r500: np.ndarray) -> np.ndarray:
    """Mean of each map (N, H, W) in annuli of r / R500c with ``edges_r500``: (N, n_bins) (NaN if empty)."""
    r = _pixel_radius(maps.shape[-1])
    out = np.full((len(maps), len(edges_r500) - 1), np.nan)
    for i, (m, r500) in enumerate(zip(maps, np.asarray(r500_pix, float))):
        idx = np.digitize(r / r500, edges_r500) - 1
        for k in range(len(edges_r500) - 1):
            sel = idx == k
            if sel.any():
                out[i, k] = m[sel].mean()
    return out


def mask_saliency(sal: np.ndarray, icm: np.ndarray, agn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean saliency over AGN-dominated (n_AGN > n_ICM) and ICM-dominated pixels per image (ho eq. 14).

    NaN where an image has no AGN-dominated pixel.
    """
    m_agn, m_icm = agn > icm, icm > agn
    with np.errstate(invalid="ignore", divide="ignore"):
        s_agn = (sal * m_agn).reshape(len(sal), -1).sum(1) / m_agn.reshape(len(sal), -1).sum(1)
        s_icm = (sal * m_icm).reshape(len(sal), -1).sum(1) / m_icm.reshape(len(sal), -1).sum(1)
    return s_agn, s_icm
