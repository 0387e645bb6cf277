"""The XOD of every simulation of one chunk, over its lightcones."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.lightcone_xray import xod_chunk

xod_chunk(snakemake.input[0], snakemake.params.xod, snakemake.output[0], n_lightcones=snakemake.params.n_lightcones)
