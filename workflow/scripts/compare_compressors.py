"""The catalogue encoder against the other inferred compressors: 68% widths, FoM, SBC/TARP (CSV)."""
from clustersbi.logs import log_to_file

log_to_file(snakemake.log[0])

from clustersbi.stages.infer import compressor_comparison_table

p, i = snakemake.params, snakemake.input
compressor_comparison_table(dict(zip(p.summaries, i.metrics)), dict(zip(p.summaries, i.calibration)), p.extractors,
                            p.priors, snakemake.output.table)
