# Scaling-relation observable: M-L_X luminosities, cluster catalogues and summaries per chunk,
# then the gathered training sets (theta, x, split) for the compression stage.



rule summaries:
    input:
        "results/halos/chunk_{chunk}.h5",
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
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/summaries.py"


rule gather:
    input:
        per_chunk("results/summaries/chunk_{chunk}.h5"),
    output:
        "results/training/{summary}.h5",
    log:
        "logs/gather/{summary}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/gather.py"


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
        scaling=canonical(config["scaling"]),
        summaries=canonical(config["summaries"]),
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
