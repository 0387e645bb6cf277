# XOD stage (analysis: ldl): per simulation, the (log CR, HR, z) histogram of the detections of
# its lightcones; the gathered training set; an observed survey binned the same way.

# results/training/xod.h5 also matches the scaling analysis's gather rule
ruleorder: gather_xod > gather


rule xod:
    input:
        "results/xray/catalogs/chunk_{chunk}.h5",
    output:
        "results/xod/chunk_{chunk}.h5",
    params:
        xod=canonical({"bins": config["xod"]["bins"], "marginal": config["xod"]["marginal"]}),
        n_lightcones=config["simulation"]["lightcone"]["n_lightcones"],
    log:
        "logs/xod/chunk_{chunk}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../envs/xray.yaml"
    script:
        "../scripts/xod.py"


rule gather_xod:
    input:
        per_chunk("results/xod/chunk_{chunk}.h5"),
    output:
        "results/training/xod.h5",
    log:
        "logs/gather/xod.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/gather_xod.py"


rule plot_xod:
    input:
        per_chunk("results/xod/chunk_{chunk}.h5"),
    output:
        report("results/plots/xod_slices.png", caption="../report/xod_slices.rst", category="X-ray"),
    log:
        "logs/plots/xod.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/xray.yaml"
    script:
        "../scripts/plot_xod.py"


if config["xod"]["observation"]["catalogue_csv"]:

    rule observed_xod:
        input:
            config["xod"]["observation"]["catalogue_csv"],
        output:
            "results/observation/xod.h5",
        params:
            xod=canonical({"bins": config["xod"]["bins"], "marginal": config["xod"]["marginal"]}),
        log:
            "logs/xod/observation.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../../envs/xray.yaml"
        script:
            "../scripts/observed_xod.py"
