"""The XOD of every simulation of one chunk, over its lightcones."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.xod import xod_chunk

xod_chunk(snakemake.input.catalogs, snakemake.params.xod, snakemake.output.xod, n_lightcones=snakemake.params.n_lightcones)
