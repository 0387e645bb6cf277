"""Cluster cutouts: the semi-analytic generator, or a user's cutout file validated and copied."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.images import cutouts_stage

cutouts_stage(snakemake.params.images, snakemake.params.xray, snakemake.params.fiducial, snakemake.params.seed,
              snakemake.output.cutouts)
