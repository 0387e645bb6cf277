"""The XOD of a user's cluster catalogue (CSV: CR, HR, z), binned as the training set."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.lightcone_xray import observed_xod

observed_xod(snakemake.input[0], snakemake.params.xod, snakemake.output[0])
