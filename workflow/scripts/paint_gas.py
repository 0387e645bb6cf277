"""n_e and T painted by the trained extended LDL on every lightcone slab of one chunk."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.ldl import paint_gas_chunk

i = snakemake.input
paint_gas_chunk(i.particles, i.ne, i.t, snakemake.params.design, snakemake.output.gas)
