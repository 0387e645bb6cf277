"""The extended LDL n_e and T models, trained once (base fit, conditioning, redshifts)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.ldl import train_ldl_models

p = snakemake.params
train_ldl_models(p.ldl, p.simulation, p.fiducial, p.priors, p.seed, dict(snakemake.output.items()))
