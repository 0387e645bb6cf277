"""Compressor networks: feature extractors joined by a regression head.

Every compressor is ``head(concat_i extractor_i(x_i))`` (mls Fig. 4): one feature extractor per
input summary, the features concatenated into one vector, and a fully connected regression head
(hidden layers of Linear + BatchNorm + ReLU + Dropout, then a final Linear with no activation)
that outputs one value per parameter (MSE loss) or a mean and a log-variance per parameter
(Gaussian negative log-likelihood loss).

Extractors:

- ``identity``: flattens the input (the ``mlp`` architecture is this plus the head: 2 hidden
  layers with BatchNorm, ReLU and dropout, mls sect. 3.1);
- ``mlp``: 2 (or more) hidden FC layers with BatchNorm, ReLU, dropout (mls sect. 3.1: the
  cluster-abundance and P(k) feature extractors of CA+PS, CA+CNN...);
- ``cnn3d``: ``n_blocks`` (5) blocks of ``n_conv_per_block`` 3x3x3 convolutions (stride 1, zero
  padding 1) each followed by BatchNorm and ReLU, then a 2x2x2 max-pooling; channels start at
  ``n_channels_first`` and double each block (mls sect. 3.1). A 64^3 input leaves 2^3 voxels,
  a 32^3 input 1 voxel; the output is flattened.
- ``xod_resnet``: the XOD's redshift axis as image channels, 4 residual blocks (He et al. 2015)
  of 3 3x3 convolutions with BatchNorm (ReLU between, ReLU after the sum with the 1x1-projected
  shortcut), each followed by a 2x2 max-pooling (ceil mode, so small diagrams never reach size
  0); then flattened; the head's 2 hidden layers and output layer are the 3 dense layers of
  cerardi sect. 3.1.
- ``catalogue_encoder``: the interpretable per-cluster encoder of Ntampaka et al. (sect. 3.1,
  Table 3, Fig. 5) on a cluster catalogue, :class:`CatalogueEncoder`: a "repeated network"
  applied to each cluster alone (no information flows between clusters) down to one *terse*
  value per cluster, the supplementary inputs (e.g. a noisy mass proxy) concatenated at the
  terse layer, the clusters sorted by brightness, a 1D CNN over the sorted list (kernel-4
  zero-padded convolutions and 2x mean pooling) and a masked global pooling, so that any
  number of clusters, none included, gives a fixed-size output.

Input tensors are channels-first: (N, C, H, W) for ``xod_resnet``, (N, C, D, H, W) for
``cnn3d``, (N, ...) for the FC extractors, (N, n_max, n_features) NaN-padded catalogues for
``catalogue_encoder``.
"""

from __future__ import annotations

import math
from typing import Literal, Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "ExtractorName",
    "MLPExtractor",
    "CNN3DExtractor",
    "XODResNetExtractor",
    "CatalogueEncoder",
    "ENCODER_DEFAULTS",
    "RegressionHead",
    "Compressor",
    "build_extractor",
    "n_outputs",
]

ExtractorName = Literal["identity", "mlp", "cnn3d", "xod_resnet", "catalogue_encoder"]
LossName = Literal["mse", "gaussian_nll"]


def _fc_stack(in_features: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_features, int(h)), nn.BatchNorm1d(int(h)), nn.ReLU(), nn.Dropout(dropout)]
        in_features = int(h)
    return nn.Sequential(*layers)


class Flatten(nn.Module):
    """Identity extractor: (N, ...) -> (N, prod(...))."""

    def __init__(self, in_shape: Sequence[int]):
        super().__init__()
        self.out_features = int(math.prod(in_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class MLPExtractor(nn.Module):
    """FC feature extractor (mls sect. 3.1): (N, ...) -> (N, hidden[-1])."""

    def __init__(self, in_shape: Sequence[int], hidden: Sequence[int] = (256, 256), dropout: float = 0.0):
        super().__init__()
        if len(hidden) < 1:
            raise ValueError("hidden must list at least one layer width")
        self.net = _fc_stack(int(math.prod(in_shape)), hidden, dropout)
        self.out_features = int(hidden[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class CNN3DExtractor(nn.Module):
    """3D CNN feature extractor (mls sect. 3.1): (N, C, L, L, L) -> (N, C_last * (L / 2^n_blocks)^3).

    Args:
        in_shape: (C, D, H, W) per sample; each spatial size must be >= 2^n_blocks.
        n_channels_first: output channels of the first block (N_chs_first); doubled each block.
        n_conv_per_block: 3x3x3 convolutions per block (N_conv_per_block).
        n_blocks: number of blocks (5 in the paper: 64^3 -> 2^3).
    """

    def __init__(
        self, in_shape: Sequence[int], n_channels_first: int = 4, n_conv_per_block: int = 1, n_blocks: int = 5
    ):
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"cnn3d in_shape must be (C, D, H, W), got {tuple(in_shape)}")
        spatial = list(in_shape[1:])
        if min(spatial) < 2**n_blocks:
            raise ValueError(f"cnn3d needs spatial sizes >= 2^n_blocks = {2**n_blocks}, got {spatial}")
        layers: list[nn.Module] = []
        c_in, c_out = int(in_shape[0]), int(n_channels_first)
        for _ in range(n_blocks):
            for _ in range(n_conv_per_block):
                layers += [nn.Conv3d(c_in, c_out, 3, stride=1, padding=1), nn.BatchNorm3d(c_out), nn.ReLU()]
                c_in = c_out
            layers.append(nn.MaxPool3d(2, stride=2, padding=0))
            spatial = [s // 2 for s in spatial]
            c_out *= 2
        self.net = nn.Sequential(*layers)
        self.out_features = c_in * int(math.prod(spatial))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ResidualBlock2d(nn.Module):
    """``relu(body(x) + shortcut(x))`` with body = n_conv 3x3 convs (BN; ReLU between)."""

    def __init__(self, c_in: int, c_out: int, n_conv: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c = c_in
        for i in range(n_conv):
            layers += [nn.Conv2d(c, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
            if i < n_conv - 1:
                layers.append(nn.ReLU())
            c = c_out
        self.body = nn.Sequential(*layers)
        self.shortcut = (
            nn.Identity()
            if c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class XODResNetExtractor(nn.Module):
    """XOD ResNet feature extractor (cerardi sect. 3.1): (N, n_z, H, W) -> (N, features).

    Args:
        in_shape: (n_z, H, W): redshift bins as channels, (CR, HR) bins as the image.
        channels: output channels of the residual blocks (4 blocks in the paper).
        n_conv_per_block: convolutions per residual block (3 in the paper).
    """

    def __init__(
        self, in_shape: Sequence[int], channels: Sequence[int] = (16, 32, 64, 128), n_conv_per_block: int = 3
    ):
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"xod_resnet in_shape must be (n_z, H, W), got {tuple(in_shape)}")
        blocks: list[nn.Module] = []
        c_in, spatial = int(in_shape[0]), list(in_shape[1:])
        for c_out in channels:
            blocks += [ResidualBlock2d(c_in, int(c_out), n_conv_per_block), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = int(c_out)
            spatial = [math.ceil(s / 2) for s in spatial]
        self.net = nn.Sequential(*blocks)
        self.out_features = c_in * int(math.prod(spatial))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


#: Settings of :class:`CatalogueEncoder` (config ``compress.encoder``; the schema holds the same
#: defaults). ``sort_column`` and ``supplementary`` are columns of the catalogue's last axis,
#: set by the compress stage from the training set's feature names.
ENCODER_DEFAULTS: dict = {
    "hidden": [64, 64, 32],
    "channels": [32, 64],
    "kernel_size": 4,
    "negative_slope": 0.01,
    "sort_column": 0,
    "supplementary": [],
}


def _lexsort_descending(keys: torch.Tensor) -> torch.Tensor:
    """Indices (N, L) sorting each row of ``keys`` (N, L, K) in descending lexicographic order:
    key 0 first, ties broken by key 1, then key 2, ... (stable sorts from the last key)."""
    n, length, n_keys = keys.shape
    order = torch.arange(length, device=keys.device).expand(n, length)
    for k in range(n_keys - 1, -1, -1):
        vals = torch.gather(keys[..., k], 1, order)
        idx = torch.sort(vals, dim=1, descending=True, stable=True).indices
        order = torch.gather(order, 1, idx)
    return order


class CatalogueEncoder(nn.Module):
    """The interpretable per-cluster encoder (Ntampaka et al., sect. 3.1, Table 3, Fig. 5).

    Input: (N, L, F) catalogues, one row per cluster, padded with NaN rows to the batch's
    length L (a row that is NaN in every column is no cluster; a NaN in a real cluster's row is
    read as 0, the training mean after standardisation). Steps:

    1. the *repeated network*: one MLP (Linear + leaky ReLU layers of widths ``hidden``, then a
       linear layer to one value) applied to every cluster's non-supplementary features alone,
       the paper's 1 x w convolutions: the *terse* value of a cluster depends on no other
       cluster (:meth:`terse`);
    2. the supplementary columns (the paper's weak-lensing mass and L_X) joined to the terse
       value: (N, L, 1 + n_supplementary) at the terse layer;
    3. clusters sorted by the ``sort_column`` (brightness), brightest first, ties broken by the
       other columns in order, so that permuting clusters of equal brightness changes nothing;
       padding sorts last;
    4. a 1D CNN over the sorted list: per entry of ``channels`` a convolution of
       ``kernel_size`` (zero padded, "same" length), leaky ReLU, then a 2x mean pooling, padded
       entries zeroed after every layer (so the output does not depend on how much padding a
       batch has: the list is extended with zeros to a multiple of 2^len(channels) first);
    5. masked global pooling: the mean and the maximum of each channel over the catalogue's
       entries, plus log(1 + n_clusters) and an empty-catalogue flag. A catalogue with no
       cluster gives zero pooled features and the flag 1 (explicit: the head learns its
       estimate), so the output has 2 channels[-1] + 2 features whatever the number of
       clusters. The paper's global max pooling alone forgets the number of clusters; the
       count is kept here because it carries the abundance information.

    Args:
        in_shape: (L, F) per sample (L, the training set's padded length, is not a parameter).
        hidden, channels, kernel_size, negative_slope, sort_column, supplementary: see
            :data:`ENCODER_DEFAULTS`.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden: Sequence[int] = (64, 64, 32),
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 4,
        negative_slope: float = 0.01,
        sort_column: int = 0,
        supplementary: Sequence[int] = (),
    ):
        super().__init__()
        if len(in_shape) != 2:
            raise ValueError(f"catalogue_encoder in_shape must be (n_clusters, n_features), got {tuple(in_shape)}")
        n_features = int(in_shape[1])
        self.supplementary = [int(c) for c in supplementary]
        bad = [c for c in [*self.supplementary, int(sort_column)] if not 0 <= c < n_features]
        if bad:
            raise ValueError(f"catalogue_encoder columns {bad} outside the {n_features} features")
        self.sort_column = int(sort_column)
        self.encoder_columns = [c for c in range(n_features) if c not in self.supplementary]
        if not self.encoder_columns:
            raise ValueError("catalogue_encoder: every feature is supplementary; the repeated network has no input")
        if len(channels) < 1 or int(kernel_size) < 1:
            raise ValueError("catalogue_encoder needs at least one channel entry and kernel_size >= 1")
        self.negative_slope = float(negative_slope)
        layers: list[nn.Module] = []
        c_in = len(self.encoder_columns)
        for h in hidden:
            layers += [nn.Linear(c_in, int(h)), nn.LeakyReLU(self.negative_slope)]
            c_in = int(h)
        layers.append(nn.Linear(c_in, 1))  # the terse value: linear
        self.repeated = nn.Sequential(*layers)
        c_in = 1 + len(self.supplementary)
        self.convs = nn.ModuleList()
        for c_out in channels:
            self.convs.append(nn.Conv1d(c_in, int(c_out), int(kernel_size)))
            c_in = int(c_out)
        self.act = nn.LeakyReLU(self.negative_slope)
        k = int(kernel_size)
        self._pad = ((k - 1) // 2, k // 2)  # zero padding keeping the length ("same", as torch pads it)
        self.out_features = 2 * c_in + 2

    @staticmethod
    def mask_of(x: torch.Tensor) -> torch.Tensor:
        """(N, L) True where a row holds a cluster (not NaN in every column)."""
        return ~torch.isnan(x).all(dim=-1)

    def terse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Terse value of every cluster, in input order: ((N, L), mask (N, L)); 0 for padding."""
        mask = self.mask_of(x)
        x0 = torch.nan_to_num(x, nan=0.0)
        t = self.repeated(x0[..., self.encoder_columns]).squeeze(-1)
        return t * mask, mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, mask = self.terse(x)
        x0 = torch.nan_to_num(x, nan=0.0)
        m = mask.unsqueeze(-1).to(x0.dtype)
        z = torch.cat([t.unsqueeze(-1), x0[..., self.supplementary]], dim=-1) * m  # (N, L, C) terse layer
        # brightest first; ties by the other columns; padding (-inf in every key) last
        keys = torch.cat([x0[..., [self.sort_column]], x0], dim=-1)
        keys = torch.where(mask.unsqueeze(-1), keys, torch.full_like(keys, -math.inf))
        order = _lexsort_descending(keys)
        z = torch.gather(z, 1, order.unsqueeze(-1).expand_as(z))
        m = torch.gather(m, 1, order.unsqueeze(-1))
        # zeros to a multiple of 2^n_pool: every pooling window is whole whatever the padding
        step = 2 ** len(self.convs)
        length = z.shape[1]
        extra = (-length) % step if length else step
        if extra:
            z = torch.cat([z, z.new_zeros(z.shape[0], extra, z.shape[2])], dim=1)
            m = torch.cat([m, m.new_zeros(m.shape[0], extra, 1)], dim=1)
        h, m = z.transpose(1, 2), m.transpose(1, 2)  # (N, C, L), (N, 1, L)
        for conv in self.convs:
            h = self.act(conv(nn.functional.pad(h, self._pad))) * m
            h = nn.functional.avg_pool1d(h, 2)
            m = nn.functional.max_pool1d(m, 2)
        n_valid = m.sum(dim=-1)  # (N, 1) entries after pooling
        mean = h.sum(dim=-1) / n_valid.clamp(min=1.0)
        peak = torch.where(m > 0, h, torch.full_like(h, -math.inf)).amax(dim=-1)
        peak = torch.where(n_valid > 0, peak, torch.zeros_like(peak))
        n = mask.sum(dim=1, keepdim=True).to(h.dtype)
        return torch.cat([mean, peak, torch.log1p(n), (n == 0).to(h.dtype)], dim=1)


class RegressionHead(nn.Module):
    """Final FC regression network (mls sect. 3.1): hidden FC layers, then a bare Linear."""

    def __init__(self, in_features: int, hidden: Sequence[int], dropout: float, n_out: int):
        super().__init__()
        self.hidden = _fc_stack(in_features, hidden, dropout)
        self.out = nn.Linear(int(hidden[-1]) if len(hidden) else in_features, n_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(h))


def n_outputs(n_params: int, loss: LossName) -> int:
    """Network outputs: n_params (MSE) or 2 n_params (mean and log-variance, Gaussian NLL)."""
    if loss == "mse":
        return n_params
    if loss == "gaussian_nll":
        return 2 * n_params
    raise ValueError(f"loss must be 'mse' or 'gaussian_nll', got {loss!r}")


def build_extractor(
    name: ExtractorName,
    in_shape: Sequence[int],
    *,
    hidden: Sequence[int] = (256, 256),
    dropout: float = 0.0,
    n_channels_first: int = 4,
    n_conv_per_block: int = 1,
    n_blocks: int = 5,
    resnet_channels: Sequence[int] = (16, 32, 64, 128),
    resnet_convs_per_block: int = 3,
    encoder: Mapping | None = None,
) -> nn.Module:
    """One feature extractor by name; ``in_shape`` is the channels-first per-sample shape."""
    if name == "identity":
        return Flatten(in_shape)
    if name == "mlp":
        return MLPExtractor(in_shape, hidden, dropout)
    if name == "cnn3d":
        return CNN3DExtractor(in_shape, n_channels_first, n_conv_per_block, n_blocks)
    if name == "xod_resnet":
        return XODResNetExtractor(in_shape, resnet_channels, resnet_convs_per_block)
    if name == "catalogue_encoder":
        settings = {**ENCODER_DEFAULTS, **dict(encoder or {})}
        unknown = sorted(set(settings) - set(ENCODER_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown catalogue_encoder settings {unknown}; known: {sorted(ENCODER_DEFAULTS)}")
        return CatalogueEncoder(in_shape, **settings)
    raise ValueError(f"extractor must be one of identity, mlp, cnn3d, xod_resnet, catalogue_encoder; got {name!r}")


class Compressor(nn.Module):
    """Feature extractors (one per named input) concatenated into a regression head.

    ``forward(inputs)`` takes a dict name -> channels-first tensor (N, ...) (or one tensor when
    there is a single input) and returns (N, n_out): standardised parameter estimates (MSE), or
    [means, log-variances] (Gaussian NLL). Use :meth:`mean_logvar` to split them.
    """

    def __init__(self, extractors: Mapping[str, nn.Module], head: RegressionHead, n_params: int, loss: LossName):
        super().__init__()
        self.extractors = nn.ModuleDict(dict(extractors))
        self.head = head
        self.n_params = int(n_params)
        self.loss_name = loss

    def forward(self, inputs: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            if len(self.extractors) != 1:
                raise ValueError(f"this compressor takes a dict with keys {list(self.extractors)}")
            inputs = {next(iter(self.extractors)): inputs}
        feats = [ext(inputs[name]) for name, ext in self.extractors.items()]
        return self.head(torch.cat(feats, dim=1))

    def mean_logvar(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Split the raw output into (mean, log-variance or None), each (N, n_params)."""
        if self.loss_name == "gaussian_nll":
            return out[:, : self.n_params], out[:, self.n_params :]
        return out, None
