"""Neural posterior estimation (NPE) on compressed summaries: training, saving, sampling.

Contract of the infer stage:

- inputs: compressed summaries y (N, d_y) and parameters theta (N, n_params) with their
  split labels, the prior box (low, high) in the design's coordinates (log-uniform priors are
  sampled in log space upstream, so the box is uniform in the coordinates theta is given in),
  and an observation y_0 (d_y,) with, when known, its true theta_0;
- outputs: the trained density estimator (``npe.pt``: ``state_dict`` + config + prior box, no
  pickled modules), posterior samples for every test simulation and for the observation,
  calibration (SBC ranks and KS p-values, TARP expected coverage and its ATC) and metrics per
  parameter, as dicts ready for JSON/CSV.

Method (cerardi sect. 3.2): NPE (Papamakarios & Murray 2016; Greenberg et al. 2019) with a
mixture density network of 10 Gaussian components from ``sbi``, or a normalising flow (MAF,
NSF). The estimator is built by ``sbi``'s ``posterior_nn`` and trained here by maximum
likelihood on the train split with early stopping on the *given* validation split (``sbi``'s
own trainer draws a random validation fraction instead), Adam, gradient clipping; batches and
initialisation come from explicit seeds.

Calibration checks and metrics are :mod:`clustersbi.calibration`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Mapping, Sequence, get_args

import numpy as np
import torch

from clustersbi.io import atomic_path

__all__ = [
    "NPEConfig",
    "NPEResult",
    "npe_config_from_dict",
    "build_prior",
    "train_npe",
    "save_npe",
    "load_npe",
    "sample_posteriors",
]

log = logging.getLogger(__name__)

DensityEstimatorName = Literal["mdn", "maf", "nsf"]
DENSITY_ESTIMATORS = get_args(DensityEstimatorName)


@dataclass
class NPEConfig:
    """Settings of the infer stage (the workflow's ``infer`` section).

    The defaults are the config schema's (workflow/schemas/sections/learn.yaml, the one
    source of truth; tests/test_config.py checks they agree).

    Attributes:
        density_estimator: "mdn" (cerardi), "maf" or "nsf".
        num_components: MDN Gaussian components (10 in cerardi sect. 3.2).
        hidden_features: hidden width of the MDN / flow networks.
        num_transforms: flow transforms (MAF/NSF only).
        learning_rate: Adam learning rate.
        batch_size: training batch size.
        max_epochs: upper limit of training epochs.
        stop_after_epochs: early-stopping patience on the validation loss.
        clip_max_norm: gradient-norm clipping (None: off).
        n_posterior_samples: samples per posterior (test simulations and observation).
        n_calibration_samples: posterior samples per test simulation for SBC and TARP.
        seed: seed of initialisation, batching and sampling.
    """

    density_estimator: DensityEstimatorName = "mdn"
    num_components: int = 10
    hidden_features: int = 50
    num_transforms: int = 5
    learning_rate: float = 5e-4
    batch_size: int = 200
    max_epochs: int = 2000
    stop_after_epochs: int = 20
    clip_max_norm: float | None = 5.0
    n_posterior_samples: int = 1000
    n_calibration_samples: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.density_estimator not in DENSITY_ESTIMATORS:
            raise ValueError(f"density_estimator must be one of {DENSITY_ESTIMATORS}, got {self.density_estimator!r}")
        for name in ("num_components", "hidden_features", "batch_size", "max_epochs", "stop_after_epochs",
                     "n_posterior_samples", "n_calibration_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def npe_config_from_dict(d: Mapping[str, Any]) -> NPEConfig:
    """Build an NPEConfig, rejecting unknown keys by name."""
    unknown = sorted(set(d) - {f.name for f in fields(NPEConfig)})
    if unknown:
        raise ValueError(f"unknown infer config keys: {unknown}")
    return NPEConfig(**dict(d))


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_tensor(a, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)


def build_prior(low: Sequence[float], high: Sequence[float], device: str | torch.device | None = "cpu"):
    """``sbi`` BoxUniform over [low, high] (n_params,), in the design's coordinates."""
    from sbi.utils import BoxUniform

    low_a, high_a = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if low_a.shape != high_a.shape or low_a.ndim != 1:
        raise ValueError(f"low and high must be 1D of equal length, got {low_a.shape} and {high_a.shape}")
    if np.any(high_a <= low_a):
        raise ValueError(f"prior box: high must exceed low in every dimension (low={low_a}, high={high_a})")
    dev = _device(device)
    return BoxUniform(low=_as_tensor(low_a, dev), high=_as_tensor(high_a, dev), device=str(dev))


def _builder(config: NPEConfig):
    from sbi.neural_nets import posterior_nn

    return posterior_nn(
        model=config.density_estimator,
        hidden_features=config.hidden_features,
        num_components=config.num_components,
        num_transforms=config.num_transforms,
    )


@dataclass
class NPEResult:
    """A trained NPE: the sbi posterior, its density estimator and training history."""

    posterior: Any
    estimator: torch.nn.Module
    config: NPEConfig
    low: list[float]
    high: list[float]
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0


def _make_posterior(estimator, low, high, device):
    from sbi.inference import DirectPosterior

    return DirectPosterior(estimator, build_prior(low, high, device), device=str(device))


def train_npe(
    theta_train: np.ndarray,
    y_train: np.ndarray,
    theta_val: np.ndarray,
    y_val: np.ndarray,
    low: Sequence[float],
    high: Sequence[float],
    config: NPEConfig | None = None,
    *,
    device: str | torch.device | None = "auto",
) -> NPEResult:
    """Train q(theta | y) by maximum likelihood, early-stopping on the validation split.

    Args:
        theta_train, y_train: (N_train, n_params), (N_train, d_y).
        theta_val, y_val: (N_val, n_params), (N_val, d_y).
        low, high: prior box (n_params,).
        config: NPE settings (None: the defaults).
        device: "auto" (CUDA when available), "cpu", "cuda".

    Returns:
        NPEResult whose ``posterior`` is an ``sbi`` DirectPosterior (samples are restricted to
        the prior box by rejection) with the best-validation weights.
    """
    t0 = time.perf_counter()
    config = NPEConfig() if config is None else config
    dev = _device(device)
    th_tr, y_tr = _as_tensor(theta_train, dev), _as_tensor(y_train, dev)
    th_va, y_va = _as_tensor(theta_val, dev), _as_tensor(y_val, dev)
    if th_tr.ndim != 2 or y_tr.ndim != 2 or th_tr.shape[0] != y_tr.shape[0]:
        raise ValueError(f"theta_train {tuple(th_tr.shape)} and y_train {tuple(y_tr.shape)} must be (N, d)")
    if th_va.shape[0] != y_va.shape[0] or th_va.shape[0] < 1:
        raise ValueError(f"theta_val {tuple(th_va.shape)} and y_val {tuple(y_va.shape)} must be (N_val >= 1, d)")
    lo, hi = np.asarray(low, float), np.asarray(high, float)
    outside = np.any((np.asarray(theta_train) < lo) | (np.asarray(theta_train) > hi), axis=1)
    if outside.any():
        raise ValueError(f"{int(outside.sum())} training parameters lie outside the prior box")

    fork = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(int(config.seed))
        # sbi builds the estimator (z-scoring statistics, a test forward pass) on the CPU; on
        # a GPU, data already on the device would meet its CPU buffers in that pass
        estimator = _builder(config)(th_tr.cpu(), y_tr.cpu()).to(dev)
    opt = torch.optim.Adam(estimator.parameters(), lr=config.learning_rate)
    n = th_tr.shape[0]
    bs = min(config.batch_size, n)
    best_val, best_epoch, bad = math.inf, -1, 0
    best_state = {k: v.detach().clone() for k, v in estimator.state_dict().items()}
    history: list[dict[str, float]] = []
    for epoch in range(config.max_epochs):
        estimator.train()
        g = torch.Generator().manual_seed(int(config.seed) * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g).to(dev)
        total = 0.0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            opt.zero_grad(set_to_none=True)
            loss = estimator.loss(th_tr[idx], y_tr[idx]).mean()
            loss.backward()
            if config.clip_max_norm is not None:
                torch.nn.utils.clip_grad_norm_(estimator.parameters(), config.clip_max_norm)
            opt.step()
            total += float(loss.detach()) * len(idx)
        estimator.eval()
        with torch.no_grad():
            val = float(estimator.loss(th_va, y_va).mean())
        history.append({"epoch": epoch, "train_loss": total / n, "val_loss": val})
        if val < best_val:
            best_val, best_epoch, bad = val, epoch, 0
            best_state = {k: v.detach().clone() for k, v in estimator.state_dict().items()}
        else:
            bad += 1
        if epoch % 10 == 0:
            log.info("NPE epoch %d train %.4f val %.4f (best %.4f @ %d)", epoch, total / n, val, best_val, best_epoch)
        if bad >= config.stop_after_epochs:
            break
    estimator.load_state_dict(best_state)
    estimator.eval()
    posterior = _make_posterior(estimator, lo, hi, dev)
    return NPEResult(posterior, estimator, config, lo.tolist(), hi.tolist(), history, best_epoch,
                     time.perf_counter() - t0)


def save_npe(path: str | os.PathLike, result: NPEResult) -> None:
    """Write the estimator's state_dict with the config, prior box and data dimensions."""
    est = result.estimator
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in est.state_dict().items()},
        "config": json.dumps(asdict(result.config)),
        "low": json.dumps(list(result.low)),
        "high": json.dumps(list(result.high)),
        "theta_dim": int(est.input_shape[0]),
        "y_dim": int(est.condition_shape[0]),
        "best_epoch": int(result.best_epoch),
        "history": json.dumps(result.history),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_npe(path: str | os.PathLike, device: str | torch.device | None = "auto") -> NPEResult:
    """Rebuild a trained NPE saved by :func:`save_npe` (architecture from its config)."""
    dev = _device(device)
    payload = torch.load(path, map_location=dev, weights_only=True)
    config = npe_config_from_dict(json.loads(payload["config"]))
    low, high = json.loads(payload["low"]), json.loads(payload["high"])
    # Dummy batches fix the shapes; the z-scoring buffers are then overwritten by the state_dict.
    g = torch.Generator().manual_seed(0)
    th = torch.rand(64, payload["theta_dim"], generator=g).to(dev)
    y = torch.randn(64, payload["y_dim"], generator=g).to(dev)
    estimator = _builder(config)(th, y).to(dev)
    estimator.load_state_dict(payload["state_dict"])
    estimator.eval()
    return NPEResult(_make_posterior(estimator, low, high, dev), estimator, config, low, high,
                     json.loads(payload["history"]), payload["best_epoch"])


# --------------------------------------------------------------------------- sampling


def sample_posteriors(
    posterior, y: np.ndarray, n_samples: int, *, seed: int = 0, batch_size: int = 256
) -> np.ndarray:
    """Posterior samples for each of B observations.

    Args:
        posterior: an ``sbi`` posterior.
        y: (B, d_y) or (d_y,) compressed observations.
        n_samples: samples per observation.
        seed: seed of the sampling (the caller's global RNG state is untouched).

    Returns:
        (B, n_samples, n_params) array (B = 1 for a single observation).
    """
    y_arr = np.atleast_2d(np.asarray(y, dtype=np.float32))
    dev = torch.device(posterior._device) if hasattr(posterior, "_device") else torch.device("cpu")
    out = []
    fork = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(int(seed))
        for i in range(0, y_arr.shape[0], batch_size):
            yb = _as_tensor(y_arr[i : i + batch_size], dev)
            s = posterior.sample_batched((n_samples,), x=yb, show_progress_bars=False)  # (S, B, d)
            out.append(s.permute(1, 0, 2).cpu().numpy())
            if i:
                log.info("sampled posteriors %d/%d", min(i + batch_size, y_arr.shape[0]), y_arr.shape[0])
    return np.concatenate(out, axis=0).astype(np.float64)
