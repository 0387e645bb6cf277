"""The Fisher forecast's 1-sigma and 2-sigma ellipses over every parameter pair."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.analytic import plot_fisher_ellipses

plot_fisher_ellipses(snakemake.input.fisher, snakemake.output.plot)
