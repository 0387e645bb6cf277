# Cluster images (analysis: cluster_images): cutouts in the clustersbi.cutouts format from the
# semi-analytic generator, a user's file or the halos of our own lightcone slabs (images.source),
# example plots, and the X-ray mass CNN of Ho et al. (single- and multi-band CNNs in spatial k-fold
# cross-validation against power-law proxies, a Table 3 analogue, residual-vs-mass and saliency
# plots).
MASS_CNN_MODELS = list(config["mass_cnn"]["models"])

IMAGES_TARGETS = [
    "results/images/cutouts.h5",
    "results/plots/images_examples.png",
    *expand("results/models/mass_cnn/{model}/model.pt", model=MASS_CNN_MODELS),
    "results/mass_cnn/table3.csv",
    "results/plots/mass_cnn_residuals.png",
    "results/plots/mass_cnn_saliency.png",
]


wildcard_constraints:
    # the schema's enum of mass_cnn.models (clustersbi.stages.images.MASS_CNN_MODELS)
    model=r"single|multi",


rule cluster_cutouts:
    input:
        unpack(simulation_cutout_inputs),
    output:
        cutouts="results/images/cutouts.h5",
    params:
        images=canonical(config["images"]),
        xray=canonical({k: config["xray"][k] for k in ("emission", "response", "absorption", "table")}),
        fiducial=canonical(config["cosmology"]["fiducial"]),
        seed=config["seed"],
    log:
        "logs/images/cutouts.log",
    benchmark:
        "results/benchmarks/images/cutouts.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/images.yaml"
    script:
        "../scripts/cluster_cutouts.py"


rule plot_image_examples:
    input:
        cutouts="results/images/cutouts.h5",
    output:
        plot=report("results/plots/images_examples.png", caption="../report/images_examples.rst", category="Cluster images"),
    params:
        n_examples=config["images"]["n_examples"],
    log:
        "logs/plots/images_examples.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/images.yaml"
    script:
        "../scripts/plot_image_examples.py"


rule train_mass_cnn:
    input:
        cutouts="results/images/cutouts.h5",
    output:
        model="results/models/mass_cnn/{model}/model.pt",
        history="results/models/mass_cnn/{model}/history.csv",
        predictions="results/models/mass_cnn/{model}/predictions.csv",
        saliency="results/models/mass_cnn/{model}/saliency.h5",
    params:
        # the Optuna search settings (tune) do not change a training
        mass_cnn=canonical({k: v for k, v in config["mass_cnn"].items() if k != "tune"}),
        seed=config["seed"],
    log:
        "logs/models/mass_cnn/{model}.log",
    benchmark:
        "results/benchmarks/models/mass_cnn/{model}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        "../../envs/images.yaml"
    script:
        "../scripts/train_mass_cnn.py"


rule mass_cnn_table:
    input:
        cutouts="results/images/cutouts.h5",
        predictions=expand("results/models/mass_cnn/{model}/predictions.csv", model=MASS_CNN_MODELS),
    output:
        table="results/mass_cnn/table3.csv",
        predictions="results/mass_cnn/predictions.csv",
    params:
        models=MASS_CNN_MODELS,
        mass_cnn=canonical(config["mass_cnn"]),
        fiducial=canonical(config["cosmology"]["fiducial"]),
    log:
        "logs/mass_cnn/table3.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/images.yaml"
    script:
        "../scripts/mass_cnn_table.py"


rule plot_mass_cnn:
    input:
        table="results/mass_cnn/table3.csv",
        predictions="results/mass_cnn/predictions.csv",
        saliency=expand("results/models/mass_cnn/{model}/saliency.h5", model=MASS_CNN_MODELS),
    output:
        residuals=report("results/plots/mass_cnn_residuals.png", caption="../report/mass_cnn_residuals.rst", category="Cluster images"),
        saliency=report("results/plots/mass_cnn_saliency.png", caption="../report/mass_cnn_saliency.rst", category="Cluster images"),
    log:
        "logs/plots/mass_cnn.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/images.yaml"
    script:
        "../scripts/plot_mass_cnn.py"


# Optional, not part of the default target: snakemake results/tuning/mass_cnn/{model}/tuning.json
rule tune_mass_cnn:
    input:
        cutouts="results/images/cutouts.h5",
    output:
        tuning="results/tuning/mass_cnn/{model}/tuning.json",
    params:
        mass_cnn=canonical(config["mass_cnn"]),
        seed=config["seed"],
    log:
        "logs/tuning/mass_cnn/{model}.log",
    benchmark:
        "results/benchmarks/tuning/mass_cnn/{model}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=1440,
    conda:
        "../../envs/images.yaml"
    script:
        "../scripts/tune_mass_cnn.py"
