"""dN/dz of the simulated XODs and of the analytic model, and their ratio."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.analytic import plot_simulated_vs_analytic

plot_simulated_vs_analytic(snakemake.input.comparison, snakemake.output.plot)
