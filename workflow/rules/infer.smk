# Neural posterior estimation on the compressed summaries, calibration and plots.


rule train_npe:
    input:
        "results/compressed/{summary}.h5",
    output:
        model="results/models/npe/{summary}.pt",
        history="results/models/npe/{summary}_history.csv",
    params:
        priors=canonical(config["priors"]),
        infer=canonical(config["infer"]),
    log:
        "logs/infer/train_npe_{summary}.log",
    benchmark:
        "results/benchmarks/infer/train_npe_{summary}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/train_npe.py"


rule evaluate_npe:
    input:
        compressed="results/compressed/{summary}.h5",
        model="results/models/npe/{summary}.pt",
    output:
        samples="results/inference/{summary}/samples.h5",
        calibration="results/inference/{summary}/calibration.json",
        metrics="results/inference/{summary}/metrics.json",
        table="results/inference/{summary}/metrics.csv",
    params:
        infer=canonical(config["infer"]),
        out_dir=lambda wc: f"results/inference/{wc.summary}",
    log:
        "logs/infer/evaluate_{summary}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/evaluate_npe.py"


rule plot_inference:
    input:
        samples="results/inference/{summary}/samples.h5",
        calibration="results/inference/{summary}/calibration.json",
        compressor_history="results/models/compressor/{summary}/history.csv",
        npe_history="results/models/npe/{summary}_history.csv",
    output:
        predicted=report("results/plots/inference/{summary}_predicted_vs_true.png", caption="../report/inference_predicted.rst", category="Inference", subcategory="{summary}"),
        corner=report("results/plots/inference/{summary}_corner.png", caption="../report/inference_corner.rst", category="Inference", subcategory="{summary}"),
        ranks=report("results/plots/inference/{summary}_sbc_ranks.png", caption="../report/inference_ranks.rst", category="Inference", subcategory="{summary}"),
        tarp=report("results/plots/inference/{summary}_tarp.png", caption="../report/inference_tarp.rst", category="Inference", subcategory="{summary}"),
        training=report("results/plots/inference/{summary}_training.png", caption="../report/inference_training.rst", category="Inference", subcategory="{summary}"),
    log:
        "logs/plots/inference_{summary}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/plot_inference.py"
