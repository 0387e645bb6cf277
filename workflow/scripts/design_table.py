"""The design table (one row per mock) for inspection."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.design import write_design_table

write_design_table(snakemake.params.config, snakemake.output.table)
