"""Count-rate maps with detections circled, and CR-HR and dN/dz of the detections."""
import sys

sys.stderr = open(snakemake.log[0], "w")

from clustersbi.lightcone_xray import plot_xray_chunk

out = snakemake.output
plot_xray_chunk(snakemake.input.maps, snakemake.input.catalogs, out.slab, out.lightcone, out.cr_hr, snakemake.params.xod)
