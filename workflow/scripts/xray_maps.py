"""Count-rate maps per slab and per lightcone of every simulation of one chunk."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.xray import xray_maps_chunk

p = snakemake.params
xray_maps_chunk(snakemake.input.gas, snakemake.input.table, p.xray, p.seed, snakemake.output.maps, design_params=p.design,
                fov_deg2=p.fov_deg2)
