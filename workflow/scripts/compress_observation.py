"""Compress an observed summary (a survey catalogue's XOD) with the summary's compressor."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.compress import compress_observation_stage

i = snakemake.input
compress_observation_stage(i.observation, i.model, snakemake.params.priors, snakemake.output.compressed)
