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
        halos=f"results/halos/chunk_{CHUNKS[0]}.h5",
        linear_power=f"results/linear_power/chunk_{CHUNKS[0]}.h5",
    output:
        power=report("results/plots/simulation_power.png", caption="../report/simulation_power.rst", category="Simulations"),
        mass_function=report("results/plots/halo_mass_function.png", caption="../report/halo_mass_function.rst", category="Simulations"),
        slice=report("results/plots/density_slice.png", caption="../report/density_slice.rst", category="Simulations"),
    log:
        "logs/plots/simulations.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/plot_simulations.py"
