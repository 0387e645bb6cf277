"""Validation plots of the first simulation: P(k) vs CAMB, halo mass function, density slice."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.plots_simulate import plot_simulation_validation

plot_simulation_validation(snakemake.input.halos, snakemake.input.linear_power, dict(snakemake.output.items()))
