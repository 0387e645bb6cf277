"""The extended LDL n_e and T models, trained once (base fit, conditioning, redshifts)."""
import logging
import sys
from pathlib import Path

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

from clustersbi.ldl_training import train_ldl_models

train_ldl_models(
    snakemake.params.ldl,
    snakemake.params.simulation,
    snakemake.params.fiducial,
    snakemake.params.priors,
    snakemake.params.seed,
    Path(snakemake.output.ne).parent,
)
