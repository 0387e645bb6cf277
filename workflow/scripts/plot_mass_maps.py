"""Figures of the U-Net mass maps: examples, pixel-wise differences, profile bias, P(k) ratio, MMD, training."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.mass_maps import plot_mass_maps

plot_mass_maps(snakemake.input.predictions, snakemake.input.metrics,
               dict(zip(snakemake.params.variants, snakemake.input.histories)), dict(snakemake.output.items()),
               n_examples=snakemake.params.n_examples)
