"""Compress every simulation of one training set."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

import torch

torch.set_num_threads(snakemake.threads)  # the rule's threads, not every core

from clustersbi.stages.compress import compress_stage

i = snakemake.input
compress_stage(i.training, i.model, snakemake.params.priors, snakemake.output.compressed, snakemake.params.parameters,
               snakemake.params.max_memory_mb)
