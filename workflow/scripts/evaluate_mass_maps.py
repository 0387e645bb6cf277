"""Predict the test clusters' mass maps with every U-Net variant; the four fidelity metrics and Table 4."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

import torch

torch.set_num_threads(snakemake.threads)

from clustersbi.stages.mass_maps import evaluate_mass_maps_stage

evaluate_mass_maps_stage(snakemake.input.cutouts, dict(zip(snakemake.params.variants, snakemake.input.models)),
                         snakemake.params.mass_maps, snakemake.params.seed, snakemake.output.predictions,
                         snakemake.output.metrics, snakemake.output.table)
