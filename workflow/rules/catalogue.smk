# Catalogue stage (analyses scaling and ldl): per mock, a table of per-cluster features (the
# halo catalogues' L_X and a noisy mass proxy; the detections' count rates, HR, z, extent and
# aperture profiles from the maps), gathered into the padded training set of the
# catalogue_encoder (results/training/catalogue.h5), and the interpretation of that encoder.


# the encoder's interpretation when the catalogue is inferred from
CATALOGUE_TARGETS = (
    ["results/interpret/catalogue/interpretation.json", *expand("results/plots/interpret/catalogue_{plot}.png",
                                                                plot=("leave_one_out", "saliency", "terse", "mass_proxy"))]
    if "catalogue" in config["inference"]["summaries"] else []
)


rule catalogue_features:
    input:
        unpack(catalogue_chunk_inputs),
    output:
        features="results/catalogue/chunk_{chunk}.h5",
    params:
        analysis=config["analysis"],
        seed=config["seed"],
        catalogue=canonical({k: v for k, v in config["catalogue"].items() if k not in ("n_max", "interpret")}),
        # the maps' bands and pixels matter to the detections' features only
        bands_kev=config["xray"]["bands_kev"] if config["analysis"] == "ldl" else None,
        pixel_arcmin=config["xray"]["pixel_arcmin"] if config["analysis"] == "ldl" else None,
    log:
        "logs/catalogue/chunk_{chunk}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/catalogue_features.py"


rule gather_catalogue:
    input:
        features=per_chunk("results/catalogue/chunk_{chunk}.h5"),
    output:
        training="results/training/catalogue.h5",
    params:
        n_max=config["catalogue"]["n_max"],
    log:
        "logs/training/catalogue.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/workflow.yaml"
    script:
        "../scripts/gather_catalogue.py"


rule interpret_catalogue:
    input:
        training="results/training/catalogue.h5",
        model="results/models/compressor/catalogue/model.pt",
        normalization="results/models/compressor/catalogue/normalization.json",
        config="results/models/compressor/catalogue/config.json",
    output:
        summary="results/interpret/catalogue/interpretation.json",
        clusters="results/interpret/catalogue/clusters.h5",
        leave_one_out=report("results/plots/interpret/catalogue_leave_one_out.png", caption="../report/interpret_leave_one_out.rst", category="Interpretation"),
        saliency=report("results/plots/interpret/catalogue_saliency.png", caption="../report/interpret_saliency.rst", category="Interpretation"),
        terse=report("results/plots/interpret/catalogue_terse.png", caption="../report/interpret_terse.rst", category="Interpretation"),
        mass_proxy=report("results/plots/interpret/catalogue_mass_proxy.png", caption="../report/interpret_mass_proxy.rst", category="Interpretation"),
    params:
        interpret=canonical(config["catalogue"]["interpret"]),
    log:
        "logs/interpret/catalogue.log",
    benchmark:
        "results/benchmarks/interpret/catalogue.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/learn.yaml"
    script:
        "../scripts/interpret_catalogue.py"

