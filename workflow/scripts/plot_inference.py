"""Predicted vs true, observation corner plot, SBC ranks, TARP and training curves."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.plots_inference import plot_inference_products

i = snakemake.input
plot_inference_products(i.samples, i.calibration, i.compressor_history, i.npe_history, dict(snakemake.output.items()))
