"""Neural compression of summaries into one estimate per parameter (compress stage).

Submodules: :mod:`~clustersbi.compress.data` (training-set file format, input/target
transforms), :mod:`~clustersbi.compress.networks` (XOD ResNet, 3D CNN, MLP, combinations),
:mod:`~clustersbi.compress.train` (training, checkpoints, application, Optuna tuning).
"""

from clustersbi.compress.data import (
    SPLITS,
    InputTransform,
    TargetScaler,
    TrainingSet,
    load_training_set,
    write_training_set,
)
from clustersbi.compress.networks import Compressor
from clustersbi.compress.train import (
    TABLE1_SEARCH_SPACE,
    CompressorConfig,
    InputSpec,
    LoadedCompressor,
    TrainResult,
    build_compressor,
    compress,
    config_from_dict,
    load_compressor,
    resolve_device,
    train_compressor,
    tune_compressor,
)

__all__ = [
    "SPLITS",
    "InputTransform",
    "TargetScaler",
    "TrainingSet",
    "load_training_set",
    "write_training_set",
    "Compressor",
    "TABLE1_SEARCH_SPACE",
    "CompressorConfig",
    "InputSpec",
    "LoadedCompressor",
    "TrainResult",
    "build_compressor",
    "compress",
    "config_from_dict",
    "load_compressor",
    "resolve_device",
    "train_compressor",
    "tune_compressor",
]
