# ldl stage rules (analysis: ldl): the extended LDL trained once (cerardi Fig. 1), and n_e, T
# painted on every lightcone slab of a chunk.


# trained LDL models and their plots; the painted gas is an intermediate of the xray stage
LDL_TARGETS = [
    "results/models/ldl/ne.npz",
    "results/models/ldl/t.npz",
    "results/models/ldl/training_summary.json",
    "results/models/ldl/cluster_fidelity.json",
    "results/plots/ldl_ne_rho.png",
    "results/plots/ldl_slices.png",
    "results/plots/ldl_training.png",
    "results/plots/ldl_cluster_fidelity.png",
]


rule train_ldl:
    output:
        ne="results/models/ldl/ne.npz",
        t="results/models/ldl/t.npz",
        history="results/models/ldl/history.csv",
        summary="results/models/ldl/training_summary.json",
        heldout="results/models/ldl/heldout.npz",
    params:
        # ldl.fidelity is the fidelity check's (rule ldl_fidelity), not the training's
        ldl=canonical({k: v for k, v in config["ldl"].items() if k != "fidelity"}),
        # only what the training boxes depend on: a new field of view or lightcone count
        # does not retrain the models
        simulation=canonical(
            {
                "a_init": config["simulation"]["a_init"],
                "n_steps": config["simulation"]["n_steps"],
                "lightcone": {
                    k: config["simulation"]["lightcone"][k]
                    for k in ("z_min", "z_max", "n_slabs", "cell_mpc_h")
                },
            }
        ),
        fiducial=canonical(config["cosmology"]["fiducial"]),
        priors=canonical(config["priors"]),
        seed=config["seed"],
    log:
        "logs/models/ldl/train.log",
    benchmark:
        "results/benchmarks/models/ldl/train.tsv"
    # JAX: XLA's CPU runtime uses the node's cores whatever is reserved here, and one job keeps
    # ~0.7-1.2 of them busy (benchmarks/RESULTS.md), so one reserved thread lets two jobs share
    # two cores; profiles/slurm sets the threads of GPU jobs (set-threads)
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        "../../envs/ldl.yaml"
    script:
        "../scripts/train_ldl.py"


# cluster-level fidelity of the trained LDL on new held-out boxes (cerardi Fig. 6); apart from
# train_ldl so that an edit of the X-ray emission or response, or of ldl.fidelity, reruns the
# check and not the training
rule ldl_fidelity:
    input:
        ne="results/models/ldl/ne.npz",
        t="results/models/ldl/t.npz",
        table="results/xray/emission_table.h5",
    output:
        summary="results/models/ldl/cluster_fidelity.json",
        clusters="results/models/ldl/heldout_clusters.csv",
    params:
        fidelity=canonical(config["ldl"]["fidelity"]),
    log:
        "logs/models/ldl/fidelity.log",
    benchmark:
        "results/benchmarks/models/ldl/fidelity.tsv"
    # JAX: one reserved thread (see the first rule of this file)
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/ldl.yaml"
    script:
        "../scripts/check_ldl_fidelity.py"


rule paint_gas:
    input:
        particles="results/particles/chunk_{chunk}.h5",
        ne="results/models/ldl/ne.npz",
        t="results/models/ldl/t.npz",
    output:
        gas=intermediate("results/gas/chunk_{chunk}.h5"),
    params:
        design=chunk_params,
    log:
        "logs/gas/chunk_{chunk}.log",
    benchmark:
        "results/benchmarks/gas/chunk_{chunk}.tsv"
    # JAX: one reserved thread (see the first rule of this file)
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/ldl.yaml"
    script:
        "../scripts/paint_gas.py"


rule plot_ldl:
    input:
        heldout="results/models/ldl/heldout.npz",
        history="results/models/ldl/history.csv",
    output:
        ne_rho=report("results/plots/ldl_ne_rho.png", caption="../report/ldl_ne_rho.rst", category="LDL"),
        slices=report("results/plots/ldl_slices.png", caption="../report/ldl_slices.rst", category="LDL"),
        training=report("results/plots/ldl_training.png", caption="../report/ldl_training.rst", category="LDL"),
    log:
        "logs/plots/ldl.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/ldl.yaml"
    script:
        "../scripts/plot_ldl.py"


rule plot_ldl_fidelity:
    input:
        summary="results/models/ldl/cluster_fidelity.json",
        clusters="results/models/ldl/heldout_clusters.csv",
    output:
        fidelity=report(
            "results/plots/ldl_cluster_fidelity.png", caption="../report/ldl_cluster_fidelity.rst", category="LDL"
        ),
    log:
        "logs/plots/ldl_fidelity.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/ldl.yaml"
    script:
        "../scripts/plot_ldl_fidelity.py"
