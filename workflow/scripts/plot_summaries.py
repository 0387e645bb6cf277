"""Luminosity functions, abundances, power spectra and field slices of all mocks."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.plots_summaries import plot_abundance, plot_field_slices, plot_luminosity_functions, plot_power_spectra

catalogs, summaries, out = snakemake.input.catalogs, snakemake.input.summaries, snakemake.output
plot_luminosity_functions(catalogs, snakemake.params.box_mpc_h, snakemake.params.scaling["threshold_erg_s"], out.luminosity)
plot_abundance(summaries, snakemake.params.summaries["abundance"]["thresholds"], out.abundance)
plot_power_spectra(summaries, out.power)
plot_field_slices(summaries, out.fields)
