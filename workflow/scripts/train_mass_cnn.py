"""One mass-CNN variant in spatial k-fold cross-validation, with its saliency."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.images import train_mass_cnn_stage

out = snakemake.output
train_mass_cnn_stage(snakemake.input.cutouts, snakemake.wildcards.model, snakemake.params.mass_cnn, snakemake.params.seed,
                     snakemake.threads, out.model, out.history, out.predictions, out.saliency)
