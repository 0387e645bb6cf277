# Linear matter power spectra (CAMB), growth and distance tables, per design chunk.


# the cosmology stage's products (part of every analysis's target)
COSMOLOGY_TARGETS = [*per_chunk("results/linear_power/chunk_{chunk}.h5"), "results/plots/linear_power.png"]


rule linear_power:
    output:
        linear_power="results/linear_power/chunk_{chunk}.h5",
    params:
        design=chunk_params,
        fiducial=canonical(config["cosmology"]["fiducial"]),
        redshifts=linear_power_redshifts(),
        k_grid=[config["cosmology"][k] for k in ("k_min_h_mpc", "k_max_h_mpc", "n_k")],
    log:
        "logs/linear_power/chunk_{chunk}.log",
    benchmark:
        "results/benchmarks/linear_power/chunk_{chunk}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/cosmology.yaml"
    script:
        "../scripts/linear_power.py"


rule plot_linear_power:
    input:
        linear_power=f"results/linear_power/chunk_{CHUNKS[0]}.h5",
    output:
        plot=report(
            "results/plots/linear_power.png",
            caption="../report/linear_power.rst",
            category="Cosmology",
        ),
    params:
        n_plot=config["cosmology"]["n_plot"],
        fiducial=canonical(config["cosmology"]["fiducial"]),
    log:
        "logs/plots/linear_power.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cosmology.yaml"
    script:
        "../scripts/plot_linear_power.py"
