# Neural compression of each training set into one estimate per parameter.


rule train_compressor:
    input:
        "results/training/{summary}.h5",
    output:
        model="results/models/compressor/{summary}/model.pt",
        history="results/models/compressor/{summary}/history.csv",
    params:
        compress=canonical(config["compress"]),
        out_dir=lambda wc: f"results/models/compressor/{wc.summary}",
    log:
        "logs/compress/train_{summary}.log",
    benchmark:
        "results/benchmarks/compress/train_{summary}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/train_compressor.py"


rule compress:
    input:
        training="results/training/{summary}.h5",
        model="results/models/compressor/{summary}/model.pt",
    output:
        "results/compressed/{summary}.h5",
    params:
        priors=canonical(config["priors"]),
        model_dir=lambda wc: f"results/models/compressor/{wc.summary}",
    log:
        "logs/compress/compress_{summary}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/compress.py"


# Optional, not part of the default target: snakemake results/tuning/{summary}/tuning.json
rule tune_compressor:
    input:
        "results/training/{summary}.h5",
    output:
        "results/tuning/{summary}/tuning.json",
    params:
        compress=canonical(config["compress"]),
        out_dir=lambda wc: f"results/tuning/{wc.summary}",
    log:
        "logs/compress/tune_{summary}.log",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=1440,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/tune_compressor.py"
