"""Pairwise scatter of the design, coloured by split."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.design import plot_design

plot_design(snakemake.input.table, snakemake.params.priors, snakemake.output.plot)
