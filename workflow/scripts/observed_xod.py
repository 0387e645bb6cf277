"""The XOD of a user's cluster catalogue (CSV: CR, HR, z), binned as the training set."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.xod import observed_xod

observed_xod(snakemake.input.catalogue, snakemake.params.xod, snakemake.output.observation)
