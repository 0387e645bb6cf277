"""Expected XODs at the design points of one chunk and one Poisson mock XOD each."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.analytic import analytic_mocks_chunk

analytic_mocks_chunk(snakemake.input.sigma, snakemake.input.table, snakemake.params.design, snakemake.params.seed,
                     snakemake.params.model, snakemake.params.fiducial, snakemake.params.area_deg2,
                     snakemake.params.batch_size, snakemake.output.xod)
