"""The validated configuration, defaults filled in, beside the results (provenance)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.design import write_resolved_config

write_resolved_config(snakemake.params.config, snakemake.output.config)
