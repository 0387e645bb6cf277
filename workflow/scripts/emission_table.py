"""The emission table r_b(kT, z) of the configured backend and response, once per config."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.xray import emission_table_file

emission_table_file(snakemake.params.xray, snakemake.params.z_max, snakemake.output.table)
