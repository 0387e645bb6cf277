"""Optuna TPE search of the U-Net hyperparameters (paper Table 3) for one variant."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

import torch

torch.set_num_threads(snakemake.threads)

from clustersbi.stages.mass_maps import tune_unet_stage

tune_unet_stage(snakemake.input.cutouts, snakemake.wildcards.variant, snakemake.params.mass_maps,
                snakemake.params.seed, snakemake.output.tuning)
