"""The exact posteriors of every job, in order, in one file."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.analytic import gather_exact_posteriors

gather_exact_posteriors(snakemake.input.parts, snakemake.output.posteriors)
