"""The emission table r_b(kT, z) of the configured backend and response, once per config."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.lightcone_xray import emission_table_file

emission_table_file(snakemake.params.xray, snakemake.params.z_max, snakemake.output[0])
