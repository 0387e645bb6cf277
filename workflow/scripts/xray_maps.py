"""Count-rate maps per slab and per lightcone of every simulation of one chunk."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.lightcone_xray import xray_maps_chunk

xray_maps_chunk(
    snakemake.input.gas,
    snakemake.input.table,
    snakemake.params.xray,
    snakemake.params.seed,
    snakemake.output[0],
    design=snakemake.params.design,
    fov_deg2=snakemake.params.fov_deg2,
)
