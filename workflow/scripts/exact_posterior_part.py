"""Exact Poisson posteriors of one job's test XODs, sampled with emcee."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.analytic import exact_posteriors_part

exact_posteriors_part(snakemake.input.training, snakemake.input.sigma, snakemake.input.table, snakemake.params.model,
                      snakemake.params.fiducial, snakemake.params.priors, snakemake.params.exact,
                      snakemake.params.area_deg2, snakemake.params.seed, int(snakemake.wildcards.part),
                      snakemake.output.part)
