"""Slices of the mean XOD over all simulations."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.lightcone_xray import plot_mean_xod

plot_mean_xod(snakemake.input, snakemake.output[0])
