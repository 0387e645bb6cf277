"""M-L_X luminosities, cluster catalogues and summaries for every mock of one chunk."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.summaries import summarise_chunk

summarise_chunk(
    snakemake.input[0],
    snakemake.params.design,
    snakemake.params.seed,
    snakemake.params.scaling,
    snakemake.params.summaries,
    snakemake.output.catalogs,
    snakemake.output.summaries,
)
