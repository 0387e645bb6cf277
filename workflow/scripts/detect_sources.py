"""sep detection catalogues of every lightcone of one chunk."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.xray import detect_chunk

detect_chunk(snakemake.input.maps, snakemake.params.detection, snakemake.output.catalogs)
