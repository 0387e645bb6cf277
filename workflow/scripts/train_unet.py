"""Train (or resume) the U-Net of one mass-map variant."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

import torch

torch.set_num_threads(snakemake.threads)  # the rule's threads, not every core

from clustersbi.stages.mass_maps import train_unet_stage

train_unet_stage(snakemake.input.cutouts, snakemake.wildcards.variant, snakemake.params.mass_maps,
                 snakemake.params.seed, snakemake.output.model)
