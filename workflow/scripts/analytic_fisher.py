"""The Poisson Fisher matrix of the analytic XOD and its forecasts."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.analytic import fisher_stage

fisher_stage(snakemake.input.sigma, snakemake.input.table, snakemake.params.model, snakemake.params.fiducial,
             snakemake.params.priors, snakemake.params.fisher, snakemake.params.area_deg2, snakemake.output.fisher)
