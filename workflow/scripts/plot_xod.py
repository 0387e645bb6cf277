"""Slices of the mean XOD over all simulations."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.xod import plot_mean_xod

plot_mean_xod(snakemake.input.xods, snakemake.output.plot)
