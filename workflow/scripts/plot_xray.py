"""Count-rate maps with detections circled, and CR-HR and dN/dz of the detections."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.xray import plot_xray_chunk

o = snakemake.output
plot_xray_chunk(snakemake.input.maps, snakemake.input.catalogs, o.slab, o.lightcone, o.cr_hr, snakemake.params.xod_bins)
