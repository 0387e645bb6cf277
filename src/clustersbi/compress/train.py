"""Training, checkpointing, application and tuning of compressors.

Contract of the compress stage:

- input: a :class:`~clustersbi.compress.data.TrainingSet` (train and val rows are used);
- output directory ``out_dir``:
  ``model.pt`` (best checkpoint: ``state_dict`` + config + input shapes + transforms, plain
  tensors and builtins only, loadable with ``torch.load(weights_only=True)``),
  ``normalization.json`` (input transforms and target scaling fitted on the training rows),
  ``config.json`` (the resolved config), ``history.csv`` (epoch, train_loss, val_loss, lr),
  ``last.pt`` (resume state: model, optimiser, scheduler, RNG states, epoch, history, early
  stopping counters; removed when training completes).

A :class:`~clustersbi.compress.data.LazyTrainingSet` (a memory bound, ``compress.max_memory_mb``)
is trained on and compressed without loading its summaries: the input transforms are fitted by
streaming over blocks of training rows, and each batch's rows are read from the file and
transformed when it is drawn. The batches are the same as in memory (same seeds), so the
weights and losses agree with the in-memory path's to float32 rounding (the streamed
transforms differ from the in-memory ones by float64 rounding only).

Training (mls sect. 3.2): AdamW, ReduceLROnPlateau on the validation loss, early stopping after
``patience`` epochs without improvement, the weights of the best validation epoch kept. Batches
are shuffled by a generator seeded with (seed, epoch), and each epoch's dropout draws come from
the torch RNG seeded the same way inside ``torch.random.fork_rng`` (the caller's global state is
untouched), so a run stopped after any epoch and resumed gives bitwise the same weights and
history on the CPU as an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, get_args

import numpy as np
import torch
from torch import nn

from clustersbi.compress.data import (
    InputTransform,
    InputTransformFitter,
    LazyTrainingSet,
    StandardizeName,
    TargetScaler,
    TrainingSet,
    TransformName,
    apply_input_transform,
    fit_input_transform,
    fit_target_scaler,
)
from clustersbi.compress.networks import (
    Compressor,
    ExtractorName,
    LossName,
    RegressionHead,
    build_extractor,
    n_outputs,
)
from clustersbi.io import atomic_path, write_json

__all__ = [
    "InputSpec",
    "CompressorConfig",
    "TrainResult",
    "LoadedCompressor",
    "resolve_device",
    "config_from_dict",
    "build_compressor",
    "prepare_inputs",
    "gaussian_nll",
    "train_compressor",
    "load_compressor",
    "compress",
    "TABLE1_SEARCH_SPACE",
    "tune_compressor",
]

log = logging.getLogger(__name__)

ArchitectureName = Literal["mlp", "xod_resnet", "cnn3d", "catalogue_encoder", "combined"]
ARCHITECTURES = get_args(ArchitectureName)
_SPATIAL_NDIM = {"xod_resnet": 2, "cnn3d": 3}

# Defaults: the config schema (workflow/schemas/sections/learn.yaml, section ``compress``) is
# the one source of truth; the workflow passes every key. A dataclass default here equals the
# schema's (tests/test_config.py checks it); fields whose default depends on the summary kind
# (the inputs) or that the stage derives (the architecture) have none.


@dataclass(kw_only=True)
class InputSpec:
    """How one named summary enters the network (one entry of the schema's ``compress.inputs``).

    Attributes:
        extractor: identity | mlp | cnn3d | xod_resnet | catalogue_encoder (set from
            ``architecture`` unless the architecture is ``combined``).
        transform: none | log10p1 (counts) | log10 (spectra).
        standardize: global | per_feature | per_column | minmax | none.
        channel_axis: per-sample axis holding channels (the XOD's redshift axis, a field's
            channels), moved to the front; None: a channel axis of size 1 is added when the
            sample has only spatial axes, otherwise channels are taken to be first.
        hidden: hidden widths of an ``mlp`` extractor (N_fc_units of mls Table 1); None: the
            extractor's default (:class:`~clustersbi.compress.networks.MLPExtractor`).
    """

    extractor: ExtractorName
    transform: TransformName
    standardize: StandardizeName
    channel_axis: int | None
    hidden: list[int] | None = None


@dataclass(kw_only=True)
class CompressorConfig:
    """Resolved compressor configuration (every key of the workflow's ``compress`` section).

    ``architecture`` and ``inputs`` come from the training set's summary kinds
    (:func:`clustersbi.stages.compress.compressor_config`). ``encoder``: settings of the
    ``catalogue_encoder`` extractor (:data:`clustersbi.compress.networks.ENCODER_DEFAULTS`
    for the keys it omits); the stage adds the columns it sorts by and joins at the terse
    layer from the training set's feature names.
    """

    architecture: ArchitectureName
    inputs: dict[str, InputSpec]
    loss: LossName = "mse"
    n_channels_first: int = 4
    n_conv_per_block: int = 1
    n_blocks: int = 5
    resnet_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    resnet_convs_per_block: int = 3
    head_hidden: list[int] = field(default_factory=lambda: [256, 256])
    dropout: float = 0.05
    lr: float = 1e-3
    weight_decay: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    batch_size: int = 64
    max_epochs: int = 300
    patience: int = 20
    scheduler_patience: int = 10
    scheduler_factor: float = 0.5
    seed: int = 0
    encoder: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inputs = {
            k: (v if isinstance(v, InputSpec) else InputSpec(**dict(v))) for k, v in dict(self.inputs).items()
        }
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        n_outputs(1, self.loss)  # validates the loss name
        if not self.inputs:
            raise ValueError("inputs must name at least one summary")
        if self.architecture != "combined":
            if len(self.inputs) != 1:
                raise ValueError(f"architecture {self.architecture!r} takes one input; use 'combined'")
            spec = next(iter(self.inputs.values()))
            spec.extractor = "identity" if self.architecture == "mlp" else self.architecture
        for name in ("batch_size", "max_epochs", "patience", "n_channels_first", "n_conv_per_block"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_from_dict(d: Mapping[str, Any]) -> CompressorConfig:
    """Build a config from a mapping, rejecting unknown keys by name."""
    known = {f.name for f in fields(CompressorConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown compress config keys: {unknown}")
    return CompressorConfig(**dict(d))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None: CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------- data preparation


def _channels_first(x: np.ndarray, spec: InputSpec, spatial_ndim: int | None) -> np.ndarray:
    """(N, ...) -> channels-first (N, C, ...) for convolutional extractors."""
    if spatial_ndim is None:
        return x
    per_sample = x.ndim - 1
    if spec.channel_axis is not None:
        if per_sample != spatial_ndim + 1:
            raise ValueError(
                f"channel_axis={spec.channel_axis} needs samples with {spatial_ndim + 1} axes, got {per_sample}"
            )
        ax = spec.channel_axis if spec.channel_axis < 0 else spec.channel_axis + 1
        return np.moveaxis(x, ax if ax >= 0 else x.ndim + ax, 1)
    if per_sample == spatial_ndim:
        return x[:, None]
    if per_sample == spatial_ndim + 1:
        return x
    raise ValueError(f"samples have {per_sample} axes; expected {spatial_ndim} or {spatial_ndim + 1}")


def prepare_inputs(
    summaries: Mapping[str, np.ndarray], config: CompressorConfig, transforms: Mapping[str, InputTransform]
) -> dict[str, np.ndarray]:
    """Transform and reshape raw summaries into float32 channels-first network inputs."""
    out = {}
    for name, spec in config.inputs.items():
        if name not in summaries:
            raise ValueError(f"summary {name!r} missing; available: {sorted(summaries)}")
        x = apply_input_transform(summaries[name], transforms[name])
        out[name] = np.ascontiguousarray(_channels_first(x, spec, _SPATIAL_NDIM.get(spec.extractor)))
    return out


def build_compressor(config: CompressorConfig, in_shapes: Mapping[str, tuple[int, ...]], n_params: int) -> Compressor:
    """Instantiate the network for channels-first per-sample ``in_shapes`` (name -> shape)."""
    extractors = {}
    for name, spec in config.inputs.items():
        # hidden None: the extractor's own default widths
        widths = {} if spec.hidden is None else {"hidden": spec.hidden}
        extractors[name] = build_extractor(
            spec.extractor,
            in_shapes[name],
            **widths,
            dropout=config.dropout,
            n_channels_first=config.n_channels_first,
            n_conv_per_block=config.n_conv_per_block,
            n_blocks=config.n_blocks,
            resnet_channels=config.resnet_channels,
            resnet_convs_per_block=config.resnet_convs_per_block,
            encoder=config.encoder,
        )
    n_feat = sum(e.out_features for e in extractors.values())
    head = RegressionHead(n_feat, config.head_hidden, config.dropout, n_outputs(n_params, config.loss))
    return Compressor(extractors, head, n_params, config.loss)


# --------------------------------------------------------------------------- losses


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood, 0.5 [log s^2 + (y - mu)^2 / s^2] (constant dropped).

    The log-variance is clamped to [-15, 15] for numerical safety; shapes (N, n_params).
    """
    logvar = logvar.clamp(-15.0, 15.0)
    return 0.5 * (logvar + (target - mean) ** 2 * torch.exp(-logvar)).mean()


def _loss(model: Compressor, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mean, logvar = model.mean_logvar(out)
    if logvar is None:
        return ((mean - target) ** 2).mean()  # mls eq. 10
    return gaussian_nll(mean, logvar, target)


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """Outcome of :func:`train_compressor`."""

    model: Compressor
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    completed: bool
    out_dir: Path
    transforms: dict[str, InputTransform]
    target_scaler: TargetScaler
    seconds: float


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2**63 - 1)


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    perm = torch.randperm(n, generator=g)
    nb = n // batch_size if n >= batch_size else 1
    # Drop the ragged last batch (BatchNorm needs > 1 sample); every sample is seen over epochs.
    return [perm[i * batch_size : (i + 1) * batch_size] for i in range(nb)]


class _PreparedRows:
    """Network inputs of rows prepared in memory: ``inputs(idx)`` indexes them."""

    def __init__(self, x: Mapping[str, np.ndarray]):
        self.x = x

    def inputs(self, idx) -> dict[str, np.ndarray]:
        return {k: v[idx] for k, v in self.x.items()}


class _FileRows:
    """Network inputs of the rows ``file_rows`` of a lazy training set, read and transformed
    per call: ``inputs(idx)`` reads ``file_rows[idx]``."""

    def __init__(self, ts: LazyTrainingSet, file_rows: np.ndarray, config: "CompressorConfig",
                 transforms: Mapping[str, InputTransform]):
        self.ts, self.file_rows, self.config, self.transforms = ts, np.asarray(file_rows), config, transforms

    def inputs(self, idx) -> dict[str, np.ndarray]:
        x = prepare_inputs(self.ts.read(self.file_rows[idx]), self.config, self.transforms)
        if isinstance(idx, slice):
            return x  # the strides of a slice of the in-memory arrays
        # a fancy-indexed copy, as the in-memory batches are, for their strides (a size-1
        # channel axis has stride 0 here, 4 there): torch picks its convolution layout, and so
        # its rounding, by the strides
        every = np.arange(len(self.file_rows[idx]))
        return {k: v[every] for k, v in x.items()}


def _tensors(arrs: Mapping[str, np.ndarray], device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in arrs.items()}


def _evaluate(model: Compressor, x: "_PreparedRows | _FileRows", y: np.ndarray, device, batch_size: int) -> float:
    model.eval()
    total, n = 0.0, y.shape[0]
    with torch.no_grad():
        for i in range(0, n, batch_size):
            sl = slice(i, min(i + batch_size, n))
            out = model(_tensors(x.inputs(sl), device))
            total += float(_loss(model, out, torch.from_numpy(y[sl]).to(device))) * (sl.stop - sl.start)
    return total / n


def _lazy_inputs(ts: LazyTrainingSet, config: "CompressorConfig"):
    """Streamed transforms, target scaler and row sources of a lazy set's train and val rows."""
    missing = sorted(set(config.inputs) - set(ts.shapes))
    if missing:
        raise ValueError(f"summary {missing[0]!r} missing; available: {sorted(ts.shapes)}")
    if config.batch_size > ts.max_rows:
        raise ValueError(
            f"compress.batch_size = {config.batch_size} rows do not fit compress.max_memory_mb = "
            f"{ts.max_memory_mb} MiB ({ts.max_rows} rows of {ts.path}); raise the bound or lower the batch size"
        )
    train_rows, val_rows = np.flatnonzero(ts.mask("train")), np.flatnonzero(ts.mask("val"))
    fitters = {name: InputTransformFitter(spec.transform, spec.standardize) for name, spec in config.inputs.items()}
    for _, block in ts.blocks(train_rows):
        for name, fitter in fitters.items():
            fitter.update(block[name])
        del block
    transforms = {name: f.result() for name, f in fitters.items()}
    return transforms, _FileRows(ts, train_rows, config, transforms), _FileRows(ts, val_rows, config, transforms), train_rows, val_rows


#: Columns of history.csv. The epoch's wall time (``seconds`` in the in-memory history) is
#: logged, not written: a rerun's outputs must equal the first run's byte for byte, and job
#: timings are Snakemake's benchmark files' business.
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "lr")


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(HISTORY_COLUMNS), extrasaction="ignore")
            w.writeheader()
            w.writerows(history)


def _save_model(path: Path, model: Compressor, config: CompressorConfig, in_shapes, transforms, scaler, param_names, epoch):
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": json.dumps(config.to_dict()),
        "in_shapes": json.dumps({k: list(v) for k, v in in_shapes.items()}),
        "normalization": json.dumps(
            {"inputs": {k: t.to_dict() for k, t in transforms.items()}, "targets": scaler.to_dict()}
        ),
        "param_names": json.dumps(list(param_names)),
        "epoch": int(epoch),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def train_compressor(
    ts: TrainingSet,
    config: CompressorConfig,
    out_dir: str | os.PathLike,
    *,
    device: str | torch.device | None = "auto",
    resume: bool = True,
    epoch_budget: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a compressor on the train rows of ``ts``, early-stopping on its val rows.

    Args:
        ts: training set (needs train and val rows), in memory or read on demand (a lazy set:
            ``config.batch_size`` rows must fit its bound).
        config: resolved configuration.
        out_dir: directory for model.pt, normalization.json, config.json, history.csv, last.pt.
        device: "auto" (CUDA if available), "cpu", "cuda", ...
        resume: continue from ``out_dir/last.pt`` when it exists (after a kill).
        epoch_budget: stop (resumably) after this many epochs in this call; None: no limit.
        on_epoch: callback(epoch, val_loss) after every epoch (used by the Optuna pruner; it
            may raise to abort).

    Returns:
        TrainResult with the best-validation model (on ``device``, eval mode) and the history.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    n_train, n_val = int(ts.mask("train").sum()), int(ts.mask("val").sum())
    if n_train < 2 or n_val < 1:
        raise ValueError(f"need >= 2 train and >= 1 val rows, got {n_train} and {n_val}")
    eval_batch = max(config.batch_size, 256)
    if isinstance(ts, LazyTrainingSet):
        transforms, x_tr, x_va, train_rows, val_rows = _lazy_inputs(ts, config)
        theta_tr, theta_va = ts.theta[train_rows], ts.theta[val_rows]
        eval_batch = min(eval_batch, ts.max_rows)
    else:
        train, val = ts.subset("train"), ts.subset("val")
        tr_sum = train.summaries()
        transforms = {
            name: fit_input_transform(tr_sum[name], spec.transform, spec.standardize)
            for name, spec in config.inputs.items()
        }
        x_tr = _PreparedRows(prepare_inputs(tr_sum, config, transforms))
        x_va = _PreparedRows(prepare_inputs(val.summaries(), config, transforms))
        theta_tr, theta_va = train.theta, val.theta
    scaler = fit_target_scaler(theta_tr)
    y_tr, y_va = scaler.forward(theta_tr), scaler.forward(theta_va)
    in_shapes = {k: tuple(v.shape[1:]) for k, v in x_tr.inputs(slice(0, 1)).items()}

    write_json(out / "config.json", config.to_dict())
    write_json(
        out / "normalization.json",
        {"inputs": {k: t.to_dict() for k, t in transforms.items()}, "targets": scaler.to_dict(),
         "param_names": list(ts.param_names)},
    )

    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(int(config.seed))
        model = build_compressor(config, in_shapes, ts.n_params).to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
        weight_decay=config.weight_decay,
    )
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=config.scheduler_factor, patience=config.scheduler_patience
    )
    history: list[dict[str, float]] = []
    start_epoch, best_val, best_epoch, bad_epochs = 0, math.inf, -1, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    completed = False

    last_path = out / "last.pt"
    if resume and last_path.exists():
        ck = torch.load(last_path, map_location=device, weights_only=True)
        if ck["config"] != json.dumps(config.to_dict()):
            raise ValueError(f"{last_path} was written with a different config; delete it or use resume=False")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        best_state = {k: v.to(device) for k, v in ck["best_state"].items()}
        history, start_epoch = ck["history"], ck["epoch"] + 1
        best_val, best_epoch, bad_epochs, completed = ck["best_val"], ck["best_epoch"], ck["bad_epochs"], ck["completed"]
        log.info("resuming from %s at epoch %d", last_path, start_epoch)

    epochs_run = 0
    epoch = start_epoch
    while not completed and epoch < config.max_epochs:
        if epoch_budget is not None and epochs_run >= epoch_budget:
            break
        te = time.perf_counter()
        model.train()
        running, seen = 0.0, 0
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(_epoch_seed(config.seed, epoch))  # dropout draws of this epoch
            for idx in _batches(y_tr.shape[0], config.batch_size, config.seed, epoch):
                xb = _tensors(x_tr.inputs(idx.numpy()), device)
                yb = torch.from_numpy(y_tr[idx.numpy()]).to(device)
                opt.zero_grad(set_to_none=True)
                loss = _loss(model, model(xb), yb)
                loss.backward()
                opt.step()
                running += float(loss.detach()) * len(idx)
                seen += len(idx)
                del xb, yb, loss  # before the next batch is read: one batch held at a time
        val_loss = _evaluate(model, x_va, y_va, device, eval_batch)
        sched.step(val_loss)
        rec = {
            "epoch": epoch, "train_loss": running / seen, "val_loss": val_loss,
            "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - te,
        }
        history.append(rec)
        if val_loss < best_val:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            _save_model(out / "model.pt", model, config, in_shapes, transforms, scaler, ts.param_names, epoch)
        else:
            bad_epochs += 1
        log.info(
            "epoch %d/%d train %.5g val %.5g (best %.5g @ %d) lr %.2e %.1fs",
            epoch + 1, config.max_epochs, rec["train_loss"], val_loss, best_val, best_epoch + 1, rec["lr"], rec["seconds"],
        )
        completed = bad_epochs >= config.patience or epoch + 1 >= config.max_epochs
        _write_history(out / "history.csv", history)
        ck = {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "best_state": best_state, "history": history, "epoch": epoch, "best_val": best_val,
            "best_epoch": best_epoch, "bad_epochs": bad_epochs, "completed": completed,
            "config": json.dumps(config.to_dict()),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        with atomic_path(last_path) as tmp:
            torch.save(ck, tmp)
        if on_epoch is not None:
            on_epoch(epoch, val_loss)
        epoch += 1
        epochs_run += 1

    model.load_state_dict(best_state)
    model.eval()
    if completed and last_path.exists():
        last_path.unlink()
    return TrainResult(model, history, best_epoch, best_val, completed, out, transforms, scaler, time.perf_counter() - t0)


# --------------------------------------------------------------------------- loading and applying


@dataclass
class LoadedCompressor:
    """A trained compressor with the transforms it was trained with."""

    model: Compressor
    config: CompressorConfig
    transforms: dict[str, InputTransform]
    target_scaler: TargetScaler
    param_names: list[str]


def load_compressor(path: str | os.PathLike, device: str | torch.device | None = "auto") -> LoadedCompressor:
    """Rebuild a compressor from ``model.pt`` (or a directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    device = resolve_device(device)
    payload = torch.load(path, map_location=device, weights_only=True)
    config = config_from_dict(json.loads(payload["config"]))
    in_shapes = {k: tuple(v) for k, v in json.loads(payload["in_shapes"]).items()}
    norm = json.loads(payload["normalization"])
    names = json.loads(payload["param_names"])
    model = build_compressor(config, in_shapes, len(names)).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    transforms = {k: InputTransform.from_dict(v) for k, v in norm["inputs"].items()}
    scaler = TargetScaler(norm["targets"]["mean"], norm["targets"]["std"])
    return LoadedCompressor(model, config, transforms, scaler, names)


def compress(
    comp: LoadedCompressor | TrainResult,
    x: np.ndarray | Mapping[str, np.ndarray] | LazyTrainingSet,
    *,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply a trained compressor to raw summaries.

    Args:
        comp: a loaded compressor or a training result.
        x: raw summaries (N, ...) or a dict name -> (N, ...), as in the training set; or a lazy
            training set, every row of which is compressed, read in batches of at most
            ``min(batch_size, x.max_rows)`` rows (the same batches as in memory when the bound
            holds ``batch_size`` rows, hence the same output).

    Returns:
        (mean, std): (N, n_params) compressed summaries in parameter units; std (N, n_params)
        is the predicted Gaussian width for the Gaussian-NLL loss, None for MSE.
    """
    model = comp.model
    config = comp.config if isinstance(comp, LoadedCompressor) else None
    if config is None:
        config = config_from_dict(json.loads((Path(comp.out_dir) / "config.json").read_text()))
    if isinstance(x, LazyTrainingSet):
        rows: _PreparedRows | _FileRows = _FileRows(x, np.arange(x.n_rows), config, comp.transforms)
        n, batch_size = x.n_rows, min(batch_size, x.max_rows)
    else:
        summaries = dict(x) if isinstance(x, Mapping) else {next(iter(config.inputs)): x}
        inputs = prepare_inputs(summaries, config, comp.transforms)
        rows, n = _PreparedRows(inputs), next(iter(inputs.values())).shape[0]
    device = next(model.parameters()).device
    means, logvars = [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, n, batch_size):
            sl = slice(i, min(i + batch_size, n))
            mu, lv = model.mean_logvar(model(_tensors(rows.inputs(sl), device)))
            means.append(mu.cpu().numpy())
            if lv is not None:
                logvars.append(lv.cpu().numpy())
    scaler = comp.target_scaler
    mean = scaler.inverse(np.concatenate(means))
    std = scaler.inverse_std(np.exp(0.5 * np.concatenate(logvars))) if logvars else None
    return mean, std


# --------------------------------------------------------------------------- tuning

#: mls Table 1. Keys name CompressorConfig fields, except ``log2_batch_size`` (batch = 2^k),
#: ``fc_units:<input>`` (hidden widths of that input's mlp extractor, both layers) and
#: ``head_units`` (both head hidden layers).
TABLE1_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"low": 1e-5, "high": 1e-2, "log": True},
    "scheduler_factor": {"low": 0.01, "high": 0.9, "log": True},
    "beta1": {"low": 0.85, "high": 0.999},
    "beta2": {"low": 0.99, "high": 0.9999},
    "eps": {"low": 1e-8, "high": 1e-4, "log": True},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "log2_batch_size": {"low": 6, "high": 9, "int": True},
    "n_channels_first": {"low": 1, "high": 10, "step": 1, "log": True, "int": True},
    "n_conv_per_block": {"low": 1, "high": 2, "step": 1, "log": True, "int": True},
    "head_units": {"low": 100, "high": 1000, "step": 100, "int": True},
    "dropout": {"low": 0.0, "high": 0.1},
}


def _suggest(trial, name: str, spec: Mapping[str, Any]):
    if spec.get("int", False):
        step = int(spec.get("step", 1))
        if spec.get("log", False):
            return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=True)
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), step=step)
    return trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)))


def _apply_trial(base: CompressorConfig, values: Mapping[str, Any]) -> CompressorConfig:
    d = base.to_dict()
    for key, val in values.items():
        if key == "log2_batch_size":
            d["batch_size"] = 2 ** int(val)
        elif key == "head_units":
            d["head_hidden"] = [int(val)] * len(d["head_hidden"])
        elif key.startswith("fc_units:"):
            name = key.split(":", 1)[1]
            if name not in d["inputs"]:
                raise ValueError(f"search space key {key!r} names no input; inputs: {sorted(d['inputs'])}")
            hidden = d["inputs"][name]["hidden"]
            # "both layers" (mls Table 1): the extractor's default has two
            d["inputs"][name]["hidden"] = [int(val)] * (len(hidden) if hidden is not None else 2)
        elif key in d:
            d[key] = val
        else:
            raise ValueError(f"search space key {key!r} is not a compress config key")
    return config_from_dict(d)


def tune_compressor(
    ts: TrainingSet,
    base_config: CompressorConfig,
    out_dir: str | os.PathLike,
    *,
    search_space: Mapping[str, Mapping[str, Any]] | None = None,
    n_trials: int = 100,
    n_startup_trials: int = 10,
    device: str | torch.device | None = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Optuna hyperparameter search (mls sect. 3.3): TPE sampler, median pruner.

    Each trial trains in ``out_dir/trial_NNNN`` and reports its validation loss every epoch;
    the objective is the last epoch's validation loss, as in the paper. Keys of
    ``search_space`` absent from the config (e.g. ``n_channels_first`` for an ``mlp``) are
    still sampled but have no effect; pass only what applies.

    Returns:
        {"best_params", "best_value", "best_config", "n_trials", "n_pruned"}; also written to
        ``out_dir/tuning.json`` with every trial's parameters and value.
    """
    import optuna

    space = dict(TABLE1_SEARCH_SPACE if search_space is None else search_space)
    out = Path(out_dir)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)

    def objective(trial) -> float:
        values = {k: _suggest(trial, k, v) for k, v in space.items()}
        cfg = _apply_trial(base_config, values)

        def report(epoch: int, val_loss: float) -> None:
            trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        res = train_compressor(ts, cfg, out / f"trial_{trial.number:04d}", device=device, resume=False, on_epoch=report)
        return float(res.history[-1]["val_loss"])

    study.optimize(objective, n_trials=n_trials)
    best_cfg = _apply_trial(base_config, study.best_params)
    summary = {
        "best_params": study.best_params,
        "best_value": study.best_value,
        "best_config": best_cfg.to_dict(),
        "n_trials": len(study.trials),
        "n_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "trials": [{"number": t.number, "params": t.params, "value": t.value, "state": t.state.name} for t in study.trials],
    }
    write_json(out / "tuning.json", summary)
    return summary
