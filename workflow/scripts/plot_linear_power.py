"""P(k) at z = 0 of the first design points."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.plots_design import plot_linear_power

plot_linear_power(snakemake.input[0], snakemake.params.n_plot, snakemake.params.fiducial, snakemake.output[0])
