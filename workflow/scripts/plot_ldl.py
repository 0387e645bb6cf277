"""LDL diagnostic plots: n_e vs rho_DM, field slices and training curves (held-out box)."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.ldl_training import plot_ldl_outputs

plot_ldl_outputs(
    snakemake.input.heldout,
    snakemake.input.history,
    snakemake.output.ne_rho,
    snakemake.output.slices,
    snakemake.output.training,
)
