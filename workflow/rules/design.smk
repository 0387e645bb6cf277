# Sobol design: the table for inspection, its plot and the resolved configuration. No rule
# depends on the table: per-chunk rules get their parameters at DAG time (design_of_chunk).


# the design stage's products (part of every analysis's target)
DESIGN_TARGETS = [
    "results/config/resolved.yaml",
    "results/design/parameters.csv",
    "results/plots/design.png",
]


rule design_table:
    output:
        table="results/design/parameters.csv",
    params:
        config=canonical({k: config[k] for k in ("seed", "design", "priors")}),
    log:
        "logs/design/parameters.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/design_table.py"


rule plot_design:
    input:
        table=rules.design_table.output.table,
    output:
        plot=report(
            "results/plots/design.png",
            caption="../report/design.rst",
            category="Design",
        ),
    params:
        priors=canonical(config["priors"]),
    log:
        "logs/plots/design.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/plot_design.py"


rule resolved_config:
    output:
        config="results/config/resolved.yaml",
    params:
        config=canonical(config),
    log:
        "logs/config/resolved.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/resolved_config.py"
