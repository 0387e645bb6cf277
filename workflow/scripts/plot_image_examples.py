"""Example cutouts, one row per cluster, one column per channel."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.images import plot_examples

plot_examples(snakemake.input.cutouts, snakemake.output.plot, snakemake.params.n_examples)
