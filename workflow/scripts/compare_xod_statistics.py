"""cerardi Table 3: FoM and 68% widths of Omega_m and sigma_8 per XOD statistic (CSV and figure)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.infer import plot_xod_statistics
from clustersbi.stages.infer import xod_statistics_table

p = snakemake.params
xod_statistics_table(dict(zip(p.statistics, snakemake.input.metrics)), p.marginals, p.priors, snakemake.output.table)
plot_xod_statistics(snakemake.output.table, snakemake.output.plot)
