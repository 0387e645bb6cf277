"""Dark-matter particles of every lightcone slab of one chunk."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.simulate import simulate_lightcone_chunk

p = snakemake.params
simulate_lightcone_chunk(snakemake.input.linear_power, p.design, p.simulation, p.seed, snakemake.output.particles,
                         mesh_omega_m=p.mesh_omega_m)
