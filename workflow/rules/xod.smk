# XOD stage (analysis: ldl): per simulation, the (log CR, HR, z) histogram of the detections of
# its lightcones; the gathered training set; an observed survey binned the same way. The gather
# and the plot read the analytic mocks instead with analysis: analytic (xod_chunk_files).


# XODs, the XOD training set, its plot and, when configured, the observed XOD
XOD_TARGETS = [
    *per_chunk("results/xod/chunk_{chunk}.h5"),
    "results/training/xod.h5",
    "results/plots/xod_slices.png",
    *(["results/observation/xod.h5"] if config["xod"]["observation"]["catalogue_csv"] else []),
]


rule bin_xod:
    input:
        catalogs="results/xray/catalogs/chunk_{chunk}.h5",
    output:
        xod="results/xod/chunk_{chunk}.h5",
    params:
        xod=xod_binning(),
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
        "../scripts/bin_xod.py"


rule gather_xod:
    input:
        xods=xod_chunk_files,
    output:
        training="results/training/{statistic}.h5",
    wildcard_constraints:
        # the XOD statistics of cerardi Table 3 (clustersbi.xod.XOD_STATISTICS)
        statistic="|".join(XOD_STATISTICS),
    params:
        # None: the chunks' own statistic (xod.marginal); else the marginal of their 3D XOD
        marginal=lambda wildcards: XOD_STATISTICS[wildcards.statistic],
    log:
        "logs/training/{statistic}.log",
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
        xods=xod_chunk_files,
    output:
        plot=report("results/plots/xod_slices.png", caption="../report/xod_slices.rst", category="X-ray"),
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
            catalogue=config["xod"]["observation"]["catalogue_csv"],
        output:
            observation="results/observation/xod.h5",
        params:
            xod=xod_binning(),
            # how per-band count-rate columns make CR and HR
            columns=canonical({"bands_kev": config["xray"]["bands_kev"], "hr_bands": config["detection"]["hr_bands"]}),
        log:
            "logs/observation/xod.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../../envs/xray.yaml"
        script:
            "../scripts/observed_xod.py"
