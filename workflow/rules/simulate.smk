# Dark-matter simulations per chunk: cubic boxes with halo catalogues (JaxPM, or the external
# Pinocchio; analysis scaling) and lightcone slabs (JaxPM; analysis ldl).


# halo catalogues and their validation plots (analysis scaling)
SIMULATE_TARGETS = [
    *per_chunk("results/halos/chunk_{chunk}.h5"),
    "results/plots/simulation_power.png",
    "results/plots/halo_mass_function.png",
    "results/plots/density_slice.png",
]


rule simulate_boxes:
    input:
        linear_power="results/linear_power/chunk_{chunk}.h5",
    output:
        halos="results/halos/chunk_{chunk}.h5",
    params:
        design=chunk_params,
        simulation=box_simulation_config(),
        pinocchio=canonical(config["pinocchio"]),
        pinocchio_log_dir="logs/halos",
    log:
        "logs/halos/chunk_{chunk}.log",
    benchmark:
        "results/benchmarks/halos/chunk_{chunk}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/simulate_boxes.py"


rule simulate_lightcone:
    input:
        linear_power="results/linear_power/chunk_{chunk}.h5",
    output:
        particles=intermediate("results/particles/chunk_{chunk}.h5"),
    params:
        design=chunk_params,
        seed=config["seed"],
        simulation=lightcone_simulation_config(),
        mesh_omega_m=lightcone_mesh_omega_m(),
    log:
        "logs/particles/chunk_{chunk}.log",
    benchmark:
        "results/benchmarks/particles/chunk_{chunk}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/simulate_lightcone.py"


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
