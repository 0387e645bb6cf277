"""The catalogue training set: every chunk's feature tables, NaN-padded (clustersbi.stages.catalogue)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.catalogue import gather_catalogue

gather_catalogue(snakemake.input.features, snakemake.output.training, n_max=snakemake.params.n_max)
