"""Dark matter and halo catalogues for every simulation of one chunk."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.halos import simulate_chunk

simulate_chunk(
    snakemake.input[0],
    snakemake.params.design,
    snakemake.params.simulation,
    snakemake.output.halos,
    pinocchio=snakemake.params.pinocchio,
    log_dir=str(snakemake.log[0]).rsplit("/", 1)[0],
)
