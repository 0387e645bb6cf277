"""The catalogue encoder's interpretation: leave-one-out, saliency, terse-layer correlations, mass proxy."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

import torch

torch.set_num_threads(snakemake.threads)

from clustersbi.plots.catalogue import plot_interpretation
from clustersbi.stages.catalogue import interpret_catalogue_stage

o = snakemake.output
interpret_catalogue_stage(snakemake.input.training, snakemake.input.model, snakemake.params.interpret, o.summary, o.clusters)
plot_interpretation(o.clusters, o.summary, {k: getattr(o, k) for k in ("leave_one_out", "saliency", "terse", "mass_proxy")})
