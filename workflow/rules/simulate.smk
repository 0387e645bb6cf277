# Dark-matter simulations per chunk (JaxPM, or the external Pinocchio), with halo catalogues.


rule simulate:
    input:
        "results/linear_power/chunk_{chunk}.h5",
    output:
        halos="results/halos/chunk_{chunk}.h5",
    params:
        design=chunk_params,
        simulation=canonical(config["simulation"]),
        pinocchio=canonical(config["pinocchio"]),
    log:
        "logs/simulate/chunk_{chunk}.log",
    benchmark:
        "results/benchmarks/simulate/chunk_{chunk}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/simulate.py"


rule plot_simulations:
    input:
        f"results/halos/chunk_{CHUNKS[0]}.h5",
    output:
        report(
            "results/plots/simulation_growth.png",
            caption="../report/simulation_growth.rst",
            category="Simulations",
        ),
    log:
        "logs/plots/simulation_growth.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/plot_simulations.py"
