# Dark-matter simulations per chunk: cubic boxes with halo catalogues (JaxPM, or the external
# Pinocchio; analysis scaling) and lightcone slabs (JaxPM; analysis ldl).


# halo catalogues and their validation plots (analysis scaling)
SIMULATE_TARGETS = [*per_chunk("results/halos/chunk_{chunk}.h5"), *map(str, simulation_plots().values())]


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
    # JAX: XLA's CPU runtime uses the node's cores whatever is reserved here, and one job keeps
    # ~0.7-1.2 of them busy (benchmarks/RESULTS.md), so one reserved thread lets two jobs share
    # two cores; profiles/slurm sets the threads of GPU jobs (set-threads)
    threads: 1
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
    # JAX: one reserved thread (see the first rule of this file)
    threads: 1
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
        **simulation_plots(),
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
