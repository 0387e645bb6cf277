"""Validation plots of the first simulation: P(k) vs CAMB, halo mass function, density slice."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.simulate import plot_simulation_validation

plot_simulation_validation(snakemake.input.halos, snakemake.input.linear_power, dict(snakemake.output.items()))
