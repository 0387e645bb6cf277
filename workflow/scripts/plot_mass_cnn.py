"""Mass residuals against true mass per estimator, and the CNN saliency profiles."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.images import plot_residuals, plot_saliency

plot_residuals(snakemake.input.predictions, snakemake.input.table, snakemake.output.residuals)
plot_saliency(list(snakemake.input.saliency), snakemake.output.saliency)
