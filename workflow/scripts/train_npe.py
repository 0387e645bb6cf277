"""Fit the neural posterior estimator on the compressed training split."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

import torch

torch.set_num_threads(snakemake.threads)  # the rule's threads, not every core

from clustersbi.stages.infer import train_npe_stage

o = snakemake.output
train_npe_stage(snakemake.input.compressed, snakemake.params.priors, snakemake.params.infer, o.model, o.history)
