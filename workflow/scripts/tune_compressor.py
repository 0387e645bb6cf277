"""Optuna search of the compressor's hyperparameters (mls Table 1)."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.posterior import tune_compressor_stage

tune_compressor_stage(snakemake.input[0], snakemake.wildcards.summary, snakemake.params.compress, snakemake.params.out_dir)
