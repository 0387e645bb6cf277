"""Neural posterior estimation (NPE) on compressed summaries: training, saving, sampling.

Contract of the infer stage:

- inputs: compressed summaries y (N, d_y) and parameters theta (N, n_params) with their
  split labels, the prior box (low, high) in the design's coordinates (log-uniform priors are
  sampled in log space upstream, so the box is uniform in the coordinates theta is given in),
  and an observation y_0 (d_y,) with, when known, its true theta_0;
- outputs: the trained density estimator, or an ensemble of them (``npe.pt``: per member a
  ``state_dict`` + config, with the prior box and the members' weights; no pickled modules),
  posterior samples for every test simulation and for the observation, calibration (SBC ranks
  and KS p-values, TARP, expected coverage, local C2ST) and metrics per parameter, as dicts
  ready for JSON/CSV.

Method (cerardi sect. 3.2): NPE (Papamakarios & Murray 2016; Greenberg et al. 2019) with a
mixture density network of 10 Gaussian components from ``sbi``, or a normalising flow (MAF,
NSF). The estimator is built by ``sbi``'s ``posterior_nn`` and trained here by maximum
likelihood on the train split with early stopping on the *given* validation split (``sbi``'s
own trainer draws a random validation fraction instead), Adam, gradient clipping; batches and
initialisation come from explicit seeds.

Ensembles (as ltu-ili's runner): several estimators (e.g. MDN and NSF, several seeds), each
trained as above on the same rows; member i gets the weight w_i = exp(L_i) / sum_j exp(L_j), L_i
its best mean validation log-probability (``"validation_log_prob"``), or 1/n (``"uniform"``).
The posterior is the mixture sum_i w_i q_i(theta | y) (sbi's ``EnsemblePosterior``: samples
drawn from member i with probability w_i, log-probability the log of the weighted sum of the
members' prior-truncated, normalised densities).

Calibration checks and metrics are :mod:`clustersbi.calibration`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Mapping, Sequence, get_args

import numpy as np
import torch

from clustersbi.io import atomic_path

__all__ = [
    "NPEConfig",
    "NPEResult",
    "NPEEnsemble",
    "ENSEMBLE_MEMBER_KEYS",
    "npe_config_from_dict",
    "member_configs",
    "ensemble_weights",
    "ensemble_posterior",
    "train_npe_ensemble",
    "build_prior",
    "train_npe",
    "save_npe",
    "load_npe",
    "sample_posteriors",
]

log = logging.getLogger(__name__)

DensityEstimatorName = Literal["mdn", "maf", "nsf"]
DENSITY_ESTIMATORS = get_args(DensityEstimatorName)
EnsembleWeighting = Literal["validation_log_prob", "uniform"]
ENSEMBLE_WEIGHTINGS = get_args(EnsembleWeighting)
#: the settings an ensemble member may override (null or absent: the infer section's own)
ENSEMBLE_MEMBER_KEYS = ("density_estimator", "num_components", "hidden_features", "num_transforms", "seed")


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
        ensemble: members of an ensemble, each a mapping of :data:`ENSEMBLE_MEMBER_KEYS` that
            override this config's values (e.g. ``[{"seed": 0}, {"seed": 1},
            {"density_estimator": "nsf"}]``); empty: one estimator, this config.
        ensemble_weighting: "validation_log_prob" (softmax of the members' best mean
            validation log-probabilities, as ltu-ili) or "uniform".
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
    ensemble: list[dict[str, Any]] = field(default_factory=list)
    ensemble_weighting: EnsembleWeighting = "validation_log_prob"

    def __post_init__(self) -> None:
        if self.density_estimator not in DENSITY_ESTIMATORS:
            raise ValueError(f"density_estimator must be one of {DENSITY_ESTIMATORS}, got {self.density_estimator!r}")
        if self.ensemble_weighting not in ENSEMBLE_WEIGHTINGS:
            raise ValueError(f"ensemble_weighting must be one of {ENSEMBLE_WEIGHTINGS}, got {self.ensemble_weighting!r}")
        self.ensemble = [dict(m) for m in self.ensemble]
        for i, member in enumerate(self.ensemble):
            unknown = sorted(set(member) - set(ENSEMBLE_MEMBER_KEYS))
            if unknown:
                raise ValueError(f"ensemble[{i}]: unknown keys {unknown}; allowed {list(ENSEMBLE_MEMBER_KEYS)}")
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


def member_configs(config: NPEConfig) -> list[NPEConfig]:
    """The configs of the ensemble members (one: ``config`` itself when no ensemble is set).

    A member's config is ``config`` with the member's non-null keys replaced and no ensemble;
    every member is validated as a config of its own.
    """
    if not config.ensemble:
        return [config]
    return [replace(config, ensemble=[], **{k: v for k, v in m.items() if v is not None}) for m in config.ensemble]


def ensemble_weights(val_log_probs: Sequence[float], weighting: EnsembleWeighting = "validation_log_prob") -> np.ndarray:
    """Normalised weights of ensemble members.

    Args:
        val_log_probs: (n_members,) each member's best mean validation log-probability
            (nats per validation simulation).
        weighting: "validation_log_prob": w_i = exp(L_i - max L) / sum_j exp(L_j - max L), the
            weighting of ltu-ili; "uniform": 1 / n.
    """
    lp = np.asarray(val_log_probs, dtype=np.float64)
    if lp.ndim != 1 or lp.size < 1 or not np.all(np.isfinite(lp)):
        raise ValueError(f"val_log_probs must be a non-empty 1D array of finite numbers, got {lp}")
    if weighting == "uniform":
        return np.full(lp.size, 1.0 / lp.size)
    if weighting != "validation_log_prob":
        raise ValueError(f"weighting must be one of {ENSEMBLE_WEIGHTINGS}, got {weighting!r}")
    w = np.exp(lp - lp.max())
    return w / w.sum()


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

    @property
    def val_log_prob(self) -> float:
        """Mean log-probability of the validation rows at the best epoch (minus its loss)."""
        if not self.history or not 0 <= self.best_epoch < len(self.history):
            raise ValueError("no training history: the validation log-probability is unknown")
        return -float(self.history[self.best_epoch]["val_loss"])


@dataclass
class NPEEnsemble:
    """Trained NPE members and their mixture.

    Attributes:
        members: the trained members (one when no ensemble is configured).
        weights: (n_members,) normalised mixture weights.
        config: the infer settings the members came from.
        posterior: the mixture, an ``sbi`` ``EnsemblePosterior``; the member's own
            ``DirectPosterior`` when there is one member.
    """

    members: list[NPEResult]
    weights: np.ndarray
    config: NPEConfig
    posterior: Any = None

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        if self.weights.shape != (len(self.members),) or abs(self.weights.sum() - 1.0) > 1e-9 or np.any(self.weights < 0):
            raise ValueError(f"weights {self.weights} must be {len(self.members)} non-negative numbers summing to 1")
        if self.posterior is None:
            self.posterior = ensemble_posterior([m.posterior for m in self.members], self.weights)

    @property
    def low(self) -> list[float]:
        return self.members[0].low

    @property
    def high(self) -> list[float]:
        return self.members[0].high

    @property
    def history(self) -> list[dict[str, float]]:
        """Every member's history, rows tagged with ``member`` (the member's position)."""
        return [{"member": i, **h} for i, m in enumerate(self.members) for h in m.history]

    def member_names(self) -> list[str]:
        """Short names of the members, e.g. ``mdn(seed 0)``."""
        return [f"{m.config.density_estimator}(seed {m.config.seed})" for m in self.members]


def ensemble_posterior(posteriors: Sequence[Any], weights: Sequence[float]):
    """The weighted mixture of posteriors (sbi ``EnsemblePosterior``); a lone posterior unchanged."""
    if len(posteriors) == 1:
        return posteriors[0]
    from sbi.inference import EnsemblePosterior

    return EnsemblePosterior(list(posteriors), weights=[float(w) for w in weights])


#: rounds of box-rejection proposals before :class:`BoxPosterior` gives up on an observation;
#: round k proposes min(2^k, 64) samples per sample still wanted (~800 per sample in all)
BOX_REJECTION_ROUNDS = 16


@functools.lru_cache(maxsize=None)  # one class: sbi's ensemble requires members of one type
def _box_posterior_class():
    from sbi.inference import DirectPosterior
    from sbi.utils.sbiutils import within_support

    class BoxPosterior(DirectPosterior):
        """sbi's ``DirectPosterior`` whose rejection of samples outside the prior box cannot stall.

        sbi rejects until every observation of a batch has its samples, whatever the
        acceptance: an observation whose estimator puts all but 1e-4 of its mass outside the
        box (a compression beyond a corner of the prior) then keeps a job busy for hours. Here
        each observation gets up to :data:`BOX_REJECTION_ROUNDS` rounds of proposals (enough
        for an acceptance of ~1e-3); one still short after them gets its accepted samples
        resampled, or, with none, its proposals clipped to the box, and a warning. The
        normalisation on the box (``leakage_correction``) is the in-box fraction of a fixed
        number of proposals.
        """

        def sample_batched(self, sample_shape, x, max_sampling_batch_size: int = 10_000, show_progress_bars: bool = False,
                           reject_outside_prior: bool = True, **kwargs):
            from sbi.neural_nets.estimators.shape_handling import reshape_to_batch_event

            est = self.posterior_estimator
            x = reshape_to_batch_event(torch.as_tensor(x, device=self._device), event_shape=est.condition_shape)
            n = torch.Size(sample_shape).numel()
            if not reject_outside_prior:
                return est.sample(torch.Size([n]), condition=x).reshape(*sample_shape, x.shape[0], -1)
            kept: list[list[torch.Tensor]] = [[] for _ in range(x.shape[0])]
            have = np.zeros(x.shape[0], dtype=int)
            last = None
            for k in range(BOX_REJECTION_ROUNDS):
                todo = np.flatnonzero(have < n)
                if todo.size == 0:
                    break
                m = int(min(2**k, 64) * min(n, max(1, max_sampling_batch_size // todo.size)))
                with torch.no_grad():
                    prop = est.sample(torch.Size([m]), condition=x[todo])  # (m, b, d)
                inside = within_support(self.prior, prop.reshape(-1, prop.shape[-1])).reshape(prop.shape[:2])
                for j, b in enumerate(todo):
                    got = prop[inside[:, j], j]
                    kept[b].append(got[: n - have[b]])
                    have[b] += min(len(got), n - have[b])
                last = (todo, prop)
            out = []
            for b in range(x.shape[0]):
                s = torch.cat(kept[b]) if kept[b] else torch.empty(0, est.input_shape[0], device=x.device)
                if len(s) < n:
                    if len(s):
                        s = torch.cat([s, s[torch.randint(len(s), (n - len(s),), device=s.device)]])
                        log.warning("posterior of observation %d of the batch: %d of %d samples inside the prior box after %d "
                                    "rounds; resampled with replacement", b, have[b], n, BOX_REJECTION_ROUNDS)
                    else:
                        j = int(np.flatnonzero(last[0] == b)[0])
                        low, high = self.prior.support.base_constraint.lower_bound, self.prior.support.base_constraint.upper_bound
                        s = torch.maximum(torch.minimum(last[1][:n, j], high), low)
                        log.warning("posterior of observation %d of the batch: no sample inside the prior box after %d rounds; "
                                    "proposals clipped to the box", b, BOX_REJECTION_ROUNDS)
                out.append(s)
            return torch.stack(out, dim=1).reshape(*sample_shape, x.shape[0], -1)

        def sample(self, sample_shape=torch.Size(), x=None, **kwargs):
            x = self._x_else_default_x(x)
            return self.sample_batched(sample_shape, x, **{k: v for k, v in kwargs.items() if k != "show_progress_bars"})[..., 0, :]

        def leakage_correction(self, x, num_rejection_samples: int = 10_000, force_update: bool = False,
                               show_progress_bars: bool = False, rejection_sampling_batch_size: int = 10_000):
            from sbi.neural_nets.estimators.shape_handling import reshape_to_batch_event

            est = self.posterior_estimator
            x = reshape_to_batch_event(torch.as_tensor(x, device=self._device), event_shape=est.condition_shape)
            with torch.no_grad():
                prop = est.sample(torch.Size([int(num_rejection_samples)]), condition=x)
            inside = within_support(self.prior, prop.reshape(-1, prop.shape[-1])).reshape(prop.shape[:2])
            return inside.float().mean(0).clamp_min(1.0 / num_rejection_samples).squeeze()

    return BoxPosterior


def _make_posterior(estimator, low, high, device):
    return _box_posterior_class()(estimator, build_prior(low, high, device), device=str(device))


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


def train_npe_ensemble(
    theta_train: np.ndarray,
    y_train: np.ndarray,
    theta_val: np.ndarray,
    y_val: np.ndarray,
    low: Sequence[float],
    high: Sequence[float],
    config: NPEConfig | None = None,
    *,
    device: str | torch.device | None = "auto",
) -> NPEEnsemble:
    """Train every member of ``config.ensemble`` (or the one estimator of ``config``) with
    :func:`train_npe` on the same rows, and weight them (:func:`ensemble_weights`)."""
    config = NPEConfig() if config is None else config
    members = []
    for i, member in enumerate(member_configs(config)):
        members.append(train_npe(theta_train, y_train, theta_val, y_val, low, high, member, device=device))
        log.info("NPE member %d (%s, seed %d): val log-prob %.4f at epoch %d, %.1f s", i, member.density_estimator,
                 member.seed, members[-1].val_log_prob, members[-1].best_epoch, members[-1].seconds)
    weights = ensemble_weights([m.val_log_prob for m in members], config.ensemble_weighting)
    return NPEEnsemble(members, weights, config)


def _member_payload(result: NPEResult) -> dict[str, Any]:
    est = result.estimator
    return {
        "state_dict": {k: v.detach().cpu() for k, v in est.state_dict().items()},
        "config": json.dumps(asdict(result.config)),
        "theta_dim": int(est.input_shape[0]),
        "y_dim": int(est.condition_shape[0]),
        "best_epoch": int(result.best_epoch),
        "history": json.dumps(result.history),
    }


def save_npe(path: str | os.PathLike, result: NPEResult | NPEEnsemble) -> None:
    """Write the members' state_dicts with their configs, the weights and the prior box.

    Plain tensors, strings and numbers only (``torch.load(weights_only=True)`` reads it); a
    single :class:`NPEResult` is saved as an ensemble of one.
    """
    ens = result if isinstance(result, NPEEnsemble) else NPEEnsemble([result], [1.0], result.config, result.posterior)
    payload = {
        "format": "clustersbi-npe-ensemble-1",
        "config": json.dumps(asdict(ens.config)),
        "low": json.dumps(list(ens.low)),
        "high": json.dumps(list(ens.high)),
        "weights": json.dumps(ens.weights.tolist()),
        "members": [_member_payload(m) for m in ens.members],
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load_member(payload: Mapping[str, Any], low, high, dev) -> NPEResult:
    config = npe_config_from_dict(json.loads(payload["config"]))
    # Dummy batches fix the shapes; the z-scoring buffers are then overwritten by the state_dict.
    g = torch.Generator().manual_seed(0)
    th = torch.rand(64, payload["theta_dim"], generator=g).to(dev)
    y = torch.randn(64, payload["y_dim"], generator=g).to(dev)
    estimator = _builder(config)(th, y).to(dev)
    estimator.load_state_dict(payload["state_dict"])
    estimator.eval()
    return NPEResult(_make_posterior(estimator, low, high, dev), estimator, config, list(low), list(high),
                     json.loads(payload["history"]), int(payload["best_epoch"]))


def load_npe(path: str | os.PathLike, device: str | torch.device | None = "auto") -> NPEEnsemble:
    """Rebuild the NPE saved by :func:`save_npe` (each member's architecture from its config).

    Returns:
        An :class:`NPEEnsemble`; its ``posterior`` is the weighted mixture (the member's own
        posterior when there is one), ``members[k].estimator`` the density estimators.
    """
    dev = _device(device)
    payload = torch.load(path, map_location=dev, weights_only=True)
    if payload.get("format") != "clustersbi-npe-ensemble-1":
        raise ValueError(f"{path}: not an NPE written by save_npe (format {payload.get('format')!r})")
    low, high = json.loads(payload["low"]), json.loads(payload["high"])
    members = [_load_member(m, low, high, dev) for m in payload["members"]]
    return NPEEnsemble(members, json.loads(payload["weights"]), npe_config_from_dict(json.loads(payload["config"])))


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
