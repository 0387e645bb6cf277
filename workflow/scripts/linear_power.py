"""CAMB linear P(k, z), growth and distances for every simulation of one chunk."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.cosmology import linear_power_stage

p = snakemake.params
linear_power_stage(p.design, p.fiducial, p.redshifts, p.k_grid, snakemake.output.linear_power)
