"""Posteriors of the test split and the observation, calibration and metrics."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.posterior import evaluate_npe_stage

evaluate_npe_stage(snakemake.input.compressed, snakemake.input.model, snakemake.params.infer, snakemake.params.out_dir)
