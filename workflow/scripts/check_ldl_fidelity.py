"""Cluster-level fidelity of the trained LDL on held-out boxes (CR-M, deviations, counts)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.ldl import ldl_cluster_fidelity

i = snakemake.input
ldl_cluster_fidelity(i.ne, i.t, i.table, snakemake.params.fidelity, dict(snakemake.output.items()))
