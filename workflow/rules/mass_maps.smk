# U-Net projected total-mass maps from cluster cutouts (de Andres et al.): one network per
# variant of mass_maps.variants on results/images/cutouts.h5 (the cutout format), the four
# fidelity metrics on the test clusters, a Table-4-like summary and the figures.
MASS_MAPS_VARIANTS = list(config["mass_maps"]["variants"])
MASS_MAPS_PLOTS = ("examples", "pixel_differences", "profile_bias", "power_ratio", "mmd", "training")

MASS_MAPS_TARGETS = [
    *expand("results/models/unet/{variant}/model.pt", variant=MASS_MAPS_VARIANTS),
    "results/mass_maps/metrics.json",
    "results/mass_maps/table4.csv",
    *expand("results/plots/mass_maps_{plot}.png", plot=MASS_MAPS_PLOTS),
]


wildcard_constraints:
    # the schema's enum of mass_maps.variants (clustersbi.unet.VARIANTS)
    variant=r"xray|y|stellar|multi1|multi3",


# what a U-Net's training depends on: the cluster split and the network settings (not the
# metrics, nor the other variants)
MASS_MAPS_TRAINING = canonical({k: config["mass_maps"][k] for k in ("rebin", "split", "unet")})


rule train_unet:
    input:
        cutouts="results/images/cutouts.h5",
    output:
        model="results/models/unet/{variant}/model.pt",
        history="results/models/unet/{variant}/history.csv",
        normalization="results/models/unet/{variant}/normalization.json",
        config="results/models/unet/{variant}/config.json",
        split="results/models/unet/{variant}/split.json",
        # last.pt beside them, the resume point, is no output: training removes it when it completes
    params:
        mass_maps=MASS_MAPS_TRAINING,
        seed=config["seed"],
    log:
        "logs/models/unet/{variant}.log",
    benchmark:
        "results/benchmarks/models/unet/{variant}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/train_unet.py"


rule evaluate_mass_maps:
    input:
        cutouts="results/images/cutouts.h5",
        models=expand("results/models/unet/{variant}/model.pt", variant=MASS_MAPS_VARIANTS),
    output:
        predictions="results/mass_maps/predictions.h5",
        metrics="results/mass_maps/metrics.json",
        table="results/mass_maps/table4.csv",
    params:
        variants=MASS_MAPS_VARIANTS,
        mass_maps=canonical({k: config["mass_maps"][k] for k in ("rebin", "split", "metrics")}),
        seed=config["seed"],
    log:
        "logs/mass_maps/evaluate.log",
    benchmark:
        "results/benchmarks/mass_maps/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/evaluate_mass_maps.py"


rule plot_mass_maps:
    input:
        predictions="results/mass_maps/predictions.h5",
        metrics="results/mass_maps/metrics.json",
        histories=expand("results/models/unet/{variant}/history.csv", variant=MASS_MAPS_VARIANTS),
    output:
        examples=report("results/plots/mass_maps_examples.png", caption="../report/mass_maps_examples.rst", category="Mass maps"),
        pixel_differences=report("results/plots/mass_maps_pixel_differences.png", caption="../report/mass_maps_pixel_differences.rst", category="Mass maps"),
        profile_bias=report("results/plots/mass_maps_profile_bias.png", caption="../report/mass_maps_profile_bias.rst", category="Mass maps"),
        power_ratio=report("results/plots/mass_maps_power_ratio.png", caption="../report/mass_maps_power_ratio.rst", category="Mass maps"),
        mmd=report("results/plots/mass_maps_mmd.png", caption="../report/mass_maps_mmd.rst", category="Mass maps"),
        training=report("results/plots/mass_maps_training.png", caption="../report/mass_maps_training.rst", category="Mass maps"),
    params:
        variants=MASS_MAPS_VARIANTS,
        n_examples=config["mass_maps"]["metrics"]["n_examples"],
    log:
        "logs/plots/mass_maps.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/plot_mass_maps.py"


# Optional, not part of the default target: snakemake results/tuning/unet/{variant}/tuning.json
rule tune_unet:
    input:
        cutouts="results/images/cutouts.h5",
    output:
        tuning="results/tuning/unet/{variant}/tuning.json",
    params:
        mass_maps=canonical({k: config["mass_maps"][k] for k in ("rebin", "split", "unet", "tune")}),
        seed=config["seed"],
    log:
        "logs/tuning/unet/{variant}.log",
    benchmark:
        "results/benchmarks/tuning/unet/{variant}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=1440,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/tune_unet.py"
