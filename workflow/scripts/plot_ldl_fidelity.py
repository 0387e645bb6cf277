"""LDL cluster fidelity figure: CR-M of target and LDL, their deviations, error vs scatter."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.plots.ldl import plot_cluster_fidelity

plot_cluster_fidelity(snakemake.input.clusters, snakemake.input.summary, snakemake.output.fidelity)
