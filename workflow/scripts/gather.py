"""One training set (theta, x, split) from every chunk's summaries."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.summaries import gather_training_set

gather_training_set(snakemake.input, snakemake.wildcards.summary, snakemake.output[0])
