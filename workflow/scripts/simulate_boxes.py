"""Dark matter and halo catalogues for every simulation of one chunk."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.simulate import simulate_chunk

p = snakemake.params
simulate_chunk(snakemake.input.linear_power, p.design, p.simulation, snakemake.output.halos, pinocchio=p.pinocchio,
               log_dir=p.pinocchio_log_dir)
