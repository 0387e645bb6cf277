"""Predicted vs true, observation corner plot, SBC ranks, TARP and training curves."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.infer import plot_inference_products

i = snakemake.input
plot_inference_products(i.samples, i.calibration, i.compressor_history, i.npe_history, dict(snakemake.output.items()),
                        priors=snakemake.params.priors)
