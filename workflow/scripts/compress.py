"""Compress every simulation of one training set."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.posterior import compress_stage

compress_stage(snakemake.input.training, snakemake.params.model_dir, snakemake.params.priors, snakemake.output[0])
