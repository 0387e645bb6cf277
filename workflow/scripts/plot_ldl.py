"""LDL diagnostic plots: n_e vs rho_DM, field slices and training curves (held-out box)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.ldl import plot_ldl_outputs

o = snakemake.output
plot_ldl_outputs(snakemake.input.heldout, snakemake.input.history, o.ne_rho, o.slices, o.training)
