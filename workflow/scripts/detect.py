"""sep detection catalogues of every lightcone of one chunk."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.lightcone_xray import detect_chunk

detect_chunk(snakemake.input[0], snakemake.params.detection, snakemake.output[0])
