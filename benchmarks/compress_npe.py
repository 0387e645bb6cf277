"""Training cost of the compressors at paper sizes and of the NPE on 40,000 samples.

Prints a table. Compressors: a few optimiser steps (forward + backward + AdamW) on random
inputs of the paper's shapes, after one warm-up step; the time per epoch is the median step
time times the number of batches per epoch (N_train / batch size, training set sizes of the
papers). NPE: an MDN with 10 components (6 parameters, 6-d compressed summaries, 40,000
training samples, batch 200) trained for a few epochs with :func:`clustersbi.npe.train_npe`;
the time per epoch is measured directly.

Usage: python benchmarks/compress_npe.py [--device auto] [--steps 3] [--npe-epochs 3]

Assumptions (the XOD binning is not given in the paper): XOD of 10 redshift channels x
32 (CR) x 32 (HR) bins; ResNet channels (16, 32, 64, 128). 3D CNN: 64^3, one channel,
N_chs_first = 4, N_conv_per_block = 1 (mls Table 1 ranges), batch 64.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from clustersbi.compress.networks import Compressor
from clustersbi.compress.train import CompressorConfig, build_compressor, resolve_device


def _step_times(model: Compressor, x: torch.Tensor, n_params: int, steps: int, device) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    y = torch.randn(x.shape[0], n_params, device=device)
    model.train()
    times = []
    for k in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k:  # the first step is a warm-up
            times.append(time.perf_counter() - t)
    return times


def bench_compressor(name: str, cfg: CompressorConfig, in_shape, batch: int, n_train: int, steps: int, device):
    torch.manual_seed(0)
    model = build_compressor(cfg, {"x": in_shape}, 6).to(device)
    n_weights = sum(p.numel() for p in model.parameters())
    x = torch.randn(batch, *in_shape, device=device)
    t = statistics.median(_step_times(model, x, 6, steps, device))
    n_batches = n_train // batch
    return {"model": name, "input": "x".join(map(str, in_shape)), "weights": n_weights, "batch": batch,
            "s_per_step": t, "batches_per_epoch": n_batches, "s_per_epoch": t * n_batches}


def bench_npe(n: int, epochs: int, device) -> dict:
    from clustersbi.npe import NPEConfig, train_npe

    rng = np.random.default_rng(0)
    low, high = np.zeros(6), np.ones(6)
    theta = rng.uniform(low, high, size=(n + 4000, 6))
    y = theta @ rng.normal(size=(6, 6)) + 0.1 * rng.normal(size=(n + 4000, 6))
    cfg = NPEConfig(max_epochs=epochs, stop_after_epochs=epochs + 1, batch_size=200)
    t = time.perf_counter()
    res = train_npe(theta[:n], y[:n], theta[n:], y[n:], low, high, cfg, device=device)
    dt = time.perf_counter() - t
    return {"model": "NPE MDN(10)", "input": f"{n}x6", "weights": sum(p.numel() for p in res.estimator.parameters()),
            "batch": 200, "s_per_step": dt / (epochs * (n // 200)), "batches_per_epoch": n // 200,
            "s_per_epoch": dt / epochs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=3, help="timed optimiser steps per compressor")
    ap.add_argument("--npe-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    benches = [
        lambda: bench_compressor("XOD ResNet", CompressorConfig(architecture="xod_resnet", head_hidden=[256, 128]),
                                 (10, 32, 32), 64, 32_000, args.steps, device),
        lambda: bench_compressor("3D CNN", CompressorConfig(architecture="cnn3d", n_channels_first=4,
                                                            n_conv_per_block=1, head_hidden=[256, 256]),
                                 (1, 64, 64, 64), 64, 28_672, args.steps, device),
        lambda: bench_npe(40_000, args.npe_epochs, device),
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"device: {device} ({name}), torch {torch.__version__}")
    print(f"{'model':<14}{'input':>14}{'weights':>10}{'batch':>7}{'s/step':>10}{'batches/ep':>12}{'s/epoch':>10}"
          + (f"{'peak GB':>9}" if device.type == "cuda" else ""), flush=True)
    for bench in benches:  # rows are printed as they finish
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        r = bench()
        peak = f"{torch.cuda.max_memory_allocated(device) / 1024**3:>9.2f}" if device.type == "cuda" else ""
        print(f"{r['model']:<14}{r['input']:>14}{r['weights']:>10}{r['batch']:>7}{r['s_per_step']:>10.4f}"
              f"{r['batches_per_epoch']:>12}{r['s_per_epoch']:>10.1f}{peak}", flush=True)


if __name__ == "__main__":
    main()
