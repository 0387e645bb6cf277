"""Optuna search of the compressor's hyperparameters (mls Table 1)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.compress import tune_compressor_stage

tune_compressor_stage(snakemake.input.training, snakemake.wildcards.summary, snakemake.params.compress, snakemake.output.tuning,
                      snakemake.params.parameters)
