"""Cluster cutouts: the semi-analytic generator, a user's cutout file validated and copied, or the
halos of the lightcone slabs."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.images import cutouts_stage

cutouts_stage(snakemake.params.images, snakemake.params.xray, snakemake.params.fiducial, snakemake.params.seed,
              snakemake.output.cutouts, particle_files=snakemake.input.get("particles", []),
              gas_files=snakemake.input.get("gas", []))
