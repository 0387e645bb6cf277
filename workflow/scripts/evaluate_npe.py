"""Posteriors of the test split and the observation, calibration and metrics."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

import torch

torch.set_num_threads(snakemake.threads)  # the rule's threads, not every core

from clustersbi.stages.infer import evaluate_npe_stage

i = snakemake.input
evaluate_npe_stage(i.compressed, i.model, snakemake.params.infer, dict(snakemake.output.items()), snakemake.params.priors)
