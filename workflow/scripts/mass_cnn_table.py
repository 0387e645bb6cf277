"""The Table 3 analogue: CNNs against power-law proxies fitted on the training folds."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.images import mass_cnn_table_stage

mass_cnn_table_stage(snakemake.input.cutouts, dict(zip(snakemake.params.models, snakemake.input.predictions)),
                     snakemake.params.mass_cnn, snakemake.params.fiducial, snakemake.output.table, snakemake.output.predictions)
