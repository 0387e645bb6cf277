"""Write the validated configuration, defaults filled in, beside the results (provenance)."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.config import write_resolved_config

write_resolved_config(snakemake.params.config, snakemake.output[0])
