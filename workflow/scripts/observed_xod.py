"""The XOD of a survey's cluster catalogue (CSV: z, and CR, HR or CR per band), binned as the training set."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.xod import observed_xod

observed_xod(snakemake.input.catalogue, snakemake.params.xod, snakemake.output.observation, snakemake.params.columns)
