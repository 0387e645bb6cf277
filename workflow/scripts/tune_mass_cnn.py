"""Optuna (TPE) search of one mass-CNN variant's hyperparameters."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.images import tune_mass_cnn_stage

tune_mass_cnn_stage(snakemake.input.cutouts, snakemake.wildcards.model, snakemake.params.mass_cnn, snakemake.params.seed,
                    snakemake.threads, snakemake.output.tuning)
