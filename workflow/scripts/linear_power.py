"""CAMB linear P(k, z), growth and distances for every simulation of one chunk."""
import logging
import sys

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
sys.stderr = open(snakemake.log[0], "a")

import numpy as np

from clustersbi.cosmology import chunk_linear_power, design_cosmologies, write_linear_power

design = snakemake.params.design
k_min, k_max, n_k = snakemake.params.k_grid
k = np.geomspace(k_min, k_max, int(n_k))
spectra = chunk_linear_power(design, snakemake.params.fiducial, snakemake.params.redshifts, k)
write_linear_power(snakemake.output[0], design, design_cosmologies(design, snakemake.params.fiducial), spectra)
logging.info("chunk %s: %d spectra written", design["chunk"], len(spectra))
