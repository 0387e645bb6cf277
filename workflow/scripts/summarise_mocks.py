"""M-L_X luminosities, cluster catalogues and summaries for every mock of one chunk."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.summaries import summarise_chunk

p, o = snakemake.params, snakemake.output
summarise_chunk(snakemake.input.halos, p.design, p.seed, p.scaling, p.summaries, o.catalogs, o.summaries)
