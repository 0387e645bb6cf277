"""Train (or resume) the compressor of one training set."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

import torch

torch.set_num_threads(snakemake.threads)  # the rule's threads, not every core

from clustersbi.stages.compress import train_compressor_stage

train_compressor_stage(snakemake.input.training, snakemake.wildcards.summary, snakemake.params.compress, snakemake.output.model,
                       snakemake.params.parameters)
