"""The XOD training set (theta, x, split) from every chunk."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.lightcone_xray import gather_xod

gather_xod(snakemake.input, snakemake.output[0])
