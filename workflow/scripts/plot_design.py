"""Pairwise scatter of the design, coloured by split."""
import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from clustersbi.plots_design import plot_design

plot_design(pd.read_csv(snakemake.input.table), snakemake.params.priors, snakemake.output[0])
