"""n_e and T painted by the trained extended LDL on every lightcone slab of one chunk."""
import logging
import sys
from pathlib import Path

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.ldl_training import paint_gas_chunk

paint_gas_chunk(
    snakemake.input.particles,
    Path(snakemake.input.ne).parent,
    snakemake.params.design,
    snakemake.output.gas,
)
