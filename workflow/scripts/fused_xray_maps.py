"""Count-rate maps of every lightcone slab of one chunk by the fused device forward (no particle or gas file)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.xray import fused_xray_maps_chunk

i, p = snakemake.input, snakemake.params
fused_xray_maps_chunk(i.linear_power, i.ne, i.t, i.table, p.design, p.simulation, p.xray, p.seed, snakemake.output.maps,
                      mesh_omega_m=p.mesh_omega_m)
