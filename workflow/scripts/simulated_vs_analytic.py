"""dN/dz of the simulated XODs against the analytic model at each XOD's cosmology (cerardi Fig. 7)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.analytic import simulated_vs_analytic_stage

p = snakemake.params
simulated_vs_analytic_stage(snakemake.input.xods, snakemake.input.sigma, snakemake.input.table, p.model, p.fiducial,
                            p.area_deg2, p.z_range, p.batch_size, snakemake.output.comparison)
