"""Train (or resume) the compressor of one training set."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.posterior import train_compressor_stage

train_compressor_stage(snakemake.input[0], snakemake.wildcards.summary, snakemake.params.compress, snakemake.params.out_dir)
