"""Per-cluster feature tables of every mock of one chunk (clustersbi.stages.catalogue)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.catalogue import catalogue_chunk_ldl, catalogue_chunk_scaling

p, i = snakemake.params, snakemake.input
if p.analysis == "scaling":
    catalogue_chunk_scaling(i.catalogs, i.summaries, p.seed, p.catalogue, snakemake.output.features)
else:
    catalogue_chunk_ldl(i.catalogs, i.maps, p.catalogue, p.bands_kev, p.pixel_arcmin, snakemake.output.features)
