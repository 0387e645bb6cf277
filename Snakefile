# clustersbi: simulation-based inference for X-ray galaxy-cluster cosmology.
# This file only wires the stages; the science lives in the clustersbi package (src/).

from snakemake.utils import min_version

min_version("8.20")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    chunk=r"\d{5}",


include: "workflow/rules/design.smk"
include: "workflow/rules/cosmology.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/summaries.smk"
include: "workflow/rules/ldl.smk"
include: "workflow/rules/xray.smk"
include: "workflow/rules/xod.smk"
include: "workflow/rules/analytic.smk"
include: "workflow/rules/catalogue.smk"
include: "workflow/rules/compress.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/mass_maps.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
