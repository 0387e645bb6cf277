"""Dark-matter particles of every lightcone slab of one chunk."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.lightcone import simulate_lightcone_chunk

simulate_lightcone_chunk(
    snakemake.input[0],
    snakemake.params.design,
    snakemake.params.simulation,
    snakemake.params.seed,
    snakemake.output.particles,
    mesh_omega_m=snakemake.params.mesh_omega_m,
)
