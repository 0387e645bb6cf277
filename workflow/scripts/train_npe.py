"""Fit the neural posterior estimator on the compressed training split."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.posterior import train_npe_stage

train_npe_stage(snakemake.input[0], snakemake.params.priors, snakemake.params.infer, snakemake.output.model, snakemake.output.history)
