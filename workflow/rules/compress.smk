# Neural compression of each training set into one estimate per parameter.


rule train_compressor:
    input:
        training="results/training/{summary}.h5",
    output:
        model="results/models/compressor/{summary}/model.pt",
        history="results/models/compressor/{summary}/history.csv",
        normalization="results/models/compressor/{summary}/normalization.json",
        config="results/models/compressor/{summary}/config.json",
        # last.pt beside them, the resume point, is no output: training removes it when it completes
    params:
        # the Optuna search settings (tune), other kinds' inputs and, but for a catalogue, the
        # encoder's settings do not change a training
        compress=lambda wildcards: compressor_settings(wildcards.summary),
        parameters=config["inference"]["parameters"],
    log:
        "logs/models/compressor/{summary}.log",
    benchmark:
        "results/benchmarks/models/compressor/{summary}.tsv"
    threads: compressor_threads
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/train_compressor.py"


rule compress_summaries:
    input:
        training="results/training/{summary}.h5",
        model="results/models/compressor/{summary}/model.pt",
        normalization="results/models/compressor/{summary}/normalization.json",
        config="results/models/compressor/{summary}/config.json",
    output:
        compressed="results/compressed/{summary}.h5",
    params:
        priors=canonical(config["priors"]),
        parameters=config["inference"]["parameters"],
        max_memory_mb=config["compress"]["max_memory_mb"],
    log:
        "logs/compressed/{summary}.log",
    benchmark:
        "results/benchmarks/compressed/{summary}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/compress_summaries.py"


# An observed summary (xod.observation.catalogue_csv: results/observation/xod.h5) through the
# same compressor: the observation of that summary's posterior (observed_summary in common.smk).
rule compress_observation:
    input:
        observation="results/observation/{summary}.h5",
        model="results/models/compressor/{summary}/model.pt",
        normalization="results/models/compressor/{summary}/normalization.json",
        config="results/models/compressor/{summary}/config.json",
    output:
        compressed="results/observation/compressed/{summary}.h5",
    params:
        priors=canonical(config["priors"]),
    log:
        "logs/observation/compressed/{summary}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/compress_observation.py"


# Optional, not part of the default target: snakemake results/tuning/{summary}/tuning.json
rule tune_compressor:
    input:
        training="results/training/{summary}.h5",
    output:
        tuning="results/tuning/{summary}/tuning.json",
    params:
        compress=canonical(config["compress"]),
        parameters=config["inference"]["parameters"],
    log:
        "logs/tuning/{summary}.log",
    benchmark:
        "results/benchmarks/tuning/{summary}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=1440,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/tune_compressor.py"
