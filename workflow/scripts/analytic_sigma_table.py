"""sigma(M) from CAMB on the Omega_m nodes of the analytic model, once per config."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.analytic import sigma_table_stage

sigma_table_stage(snakemake.params.fiducial, snakemake.params.omega_m_range, snakemake.params.settings, snakemake.output.table)
