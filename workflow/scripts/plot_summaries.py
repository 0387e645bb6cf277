"""Luminosity functions, abundances, power spectra and field slices of all mocks."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.summaries import plot_summary_products

p = snakemake.params
plot_summary_products(snakemake.input.catalogs, snakemake.input.summaries, p.box_mpc_h, p.threshold_erg_s, p.thresholds,
                      dict(snakemake.output.items()))
