"""An XOD statistic's training set (theta, x, split) from every chunk."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.xod import gather_xod

gather_xod(snakemake.input.xods, snakemake.output.training, marginal=snakemake.params.marginal)
