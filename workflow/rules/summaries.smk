# Scaling-relation observable (analysis: scaling): M-L_X luminosities, cluster catalogues and
# summaries per chunk, then the gathered training sets (theta, x, split).


# training sets of the configured summary kinds and their plots (analysis scaling)
SUMMARIES_TARGETS = [
    *expand("results/training/{summary}.h5", summary=config["summaries"]["kinds"]),
    "results/plots/luminosity_functions.png",
    "results/plots/abundance.png",
    "results/plots/power_spectra.png",
    "results/plots/fields.png",
]


rule summarise_mocks:
    input:
        halos="results/halos/chunk_{chunk}.h5",
    output:
        catalogs="results/catalogs/chunk_{chunk}.h5",
        summaries="results/summaries/chunk_{chunk}.h5",
    params:
        design=chunk_params,
        seed=config["seed"],
        scaling=canonical(config["scaling"]),
        summaries=canonical(config["summaries"]),
    log:
        "logs/summaries/chunk_{chunk}.log",
    benchmark:
        "results/benchmarks/summaries/chunk_{chunk}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/summarise_mocks.py"


rule gather_summaries:
    input:
        summaries=per_chunk("results/summaries/chunk_{chunk}.h5"),
    output:
        training="results/training/{summary}.h5",
    wildcard_constraints:
        # the summary kinds of this stage, alone or joined by '+'; xod.h5 is gather_xod's
        summary=r"(abundance|power_spectrum|fields)(\+(abundance|power_spectrum|fields))*",
    log:
        "logs/training/{summary}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/gather_summaries.py"


rule plot_summaries:
    input:
        catalogs=per_chunk("results/catalogs/chunk_{chunk}.h5"),
        summaries=per_chunk("results/summaries/chunk_{chunk}.h5"),
    output:
        luminosity=report("results/plots/luminosity_functions.png", caption="../report/luminosity_functions.rst", category="Summaries"),
        abundance=report("results/plots/abundance.png", caption="../report/abundance.rst", category="Summaries"),
        power=report("results/plots/power_spectra.png", caption="../report/power_spectra.rst", category="Summaries"),
        fields=report("results/plots/fields.png", caption="../report/fields.rst", category="Summaries"),
    params:
        box_mpc_h=config["simulation"]["box_mpc_h"],
        threshold_erg_s=config["scaling"]["threshold_erg_s"],
        thresholds=canonical(config["summaries"]["abundance"]["thresholds"]),
    log:
        "logs/plots/summaries.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/plot_summaries.py"
