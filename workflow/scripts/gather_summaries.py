"""One training set (theta, x, split) from every chunk's summaries."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.summaries import gather_training_set

gather_training_set(snakemake.input.summaries, snakemake.wildcards.summary, snakemake.output.training)
