"""NPE and exact posterior contours of four test XODs."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.analytic import plot_npe_vs_exact

plot_npe_vs_exact(snakemake.input.exact, snakemake.input.npe, snakemake.params.priors, snakemake.output.plot)
