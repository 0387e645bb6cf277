# Neural posterior estimation on the compressed summaries, calibration and plots.


# the inferred XOD statistics (cerardi Table 3), compared when there are two or more
XOD_INFERRED = [s for s in config["inference"]["summaries"] if s in XOD_STATISTICS]

# posteriors, calibration and plots per inferred training set
INFER_TARGETS = [
    *expand("results/inference/{summary}/metrics.json", summary=config["inference"]["summaries"]),
    *expand(
        "results/plots/inference/{summary}_{plot}.png",
        summary=config["inference"]["summaries"],
        plot=("predicted_vs_true", "corner", "sbc_ranks", "tarp", "expected_coverage", "lc2st", "training"),
    ),
    *(["results/inference/xod_statistics.csv", "results/plots/inference/xod_statistics.png"] if len(XOD_INFERRED) > 1 else []),
]


rule train_npe:
    input:
        compressed="results/compressed/{summary}.h5",
    output:
        model="results/models/npe/{summary}.pt",
        history="results/models/npe/{summary}_history.csv",
    params:
        priors=canonical(config["priors"]),
        infer=canonical({k: v for k, v in config["infer"].items() if k not in ("observation", "diagnostics")}),
    log:
        "logs/models/npe/{summary}.log",
    benchmark:
        "results/benchmarks/models/npe/{summary}.tsv"
    # a density estimator of a few parameters: one thread (two only contend, see compressor_threads)
    threads: 1
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
        # a survey catalogue's compressed XOD when xod.observation.catalogue_csv is set
        observation=observation_input,
    output:
        samples="results/inference/{summary}/samples.h5",
        calibration="results/inference/{summary}/calibration.json",
        metrics="results/inference/{summary}/metrics.json",
        table="results/inference/{summary}/metrics.csv",
    params:
        infer=infer_params,
        priors=canonical(config["priors"]),
    log:
        "logs/inference/{summary}.log",
    benchmark:
        "results/benchmarks/inference/{summary}.tsv"
    threads: 1
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
        coverage=report("results/plots/inference/{summary}_expected_coverage.png", caption="../report/inference_coverage.rst", category="Inference", subcategory="{summary}"),
        lc2st=report("results/plots/inference/{summary}_lc2st.png", caption="../report/inference_lc2st.rst", category="Inference", subcategory="{summary}"),
        training=report("results/plots/inference/{summary}_training.png", caption="../report/inference_training.rst", category="Inference", subcategory="{summary}"),
    params:
        priors=canonical(config["priors"]),
    log:
        "logs/plots/inference/{summary}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/plot_inference.py"


rule compare_xod_statistics:
    input:
        metrics=expand("results/inference/{summary}/metrics.json", summary=XOD_INFERRED),
    output:
        table="results/inference/xod_statistics.csv",
        plot=report("results/plots/inference/xod_statistics.png", caption="../report/xod_statistics.rst", category="Inference"),
    params:
        statistics=XOD_INFERRED,
        marginals={s: statistic_marginal(s, config["xod"]["marginal"]) for s in XOD_INFERRED},
        priors=canonical(config["priors"]),
    log:
        "logs/inference/xod_statistics.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/compare_xod_statistics.py"


# the catalogue encoder against the other inferred compressors (the abundance MLP of the scaling
# analysis, the XOD ResNet of the ldl analysis), on the same design
COMPARED = config["inference"]["summaries"] if "catalogue" in config["inference"]["summaries"] else []
if len(COMPARED) > 1:
    INFER_TARGETS.append("results/inference/compressors.csv")


rule compare_compressors:
    input:
        metrics=expand("results/inference/{summary}/metrics.json", summary=COMPARED),
        calibration=expand("results/inference/{summary}/calibration.json", summary=COMPARED),
    output:
        table="results/inference/compressors.csv",
    params:
        summaries=COMPARED,
        extractors={s: "+".join(config["compress"]["inputs"][k]["extractor"] for k in s.split("+")) for s in COMPARED},
        priors=canonical(config["priors"]),
    log:
        "logs/inference/compressors.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/compare_compressors.py"
