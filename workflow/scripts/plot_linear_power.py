"""P(k) at z = 0 of the first design points."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.cosmology import plot_linear_power

plot_linear_power(snakemake.input.linear_power, snakemake.params.n_plot, snakemake.params.fiducial, snakemake.output.plot)
