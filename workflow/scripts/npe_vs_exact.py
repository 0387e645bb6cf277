"""The NPE's posteriors of the exact posteriors' XODs, and their comparison."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

import torch

torch.set_num_threads(snakemake.threads)  # the rule's threads, not every core

from clustersbi.stages.analytic import npe_vs_exact_stage

npe_vs_exact_stage(snakemake.input.exact, snakemake.input.compressed, snakemake.input.npe, snakemake.params.priors,
                   snakemake.params.n_samples, snakemake.params.seed, snakemake.output)
