# Analytic stage (analysis: analytic; cerardi sections 4.1, 5.1): Tinker08 x XXL expected XODs and
# Poisson mocks per design chunk (gathered by xod.smk's gather_xod, then compressed and inferred as
# any XOD), the Fisher forecast, exact posteriors of test XODs and the NPE compared with them.
# With analysis: ldl, the simulated XODs' dN/dz against the analytic model (cerardi Fig. 7).


# mocks, training set, Fisher forecast, exact posteriors, NPE against exact, and their figures
ANALYTIC_TARGETS = [
    *per_chunk("results/analytic/xod/chunk_{chunk}.h5"),
    "results/training/xod.h5",
    "results/plots/xod_slices.png",
    "results/analytic/fisher.json",
    "results/plots/analytic_fisher.png",
    "results/analytic/exact_posteriors.h5",
    "results/analytic/npe_vs_exact.csv",
    "results/analytic/npe_vs_exact.json",
    "results/plots/analytic_npe_vs_exact.png",
]

# the simulated XOD chain (analysis ldl) against the analytic model at the same area and cut
ANALYTIC_VS_SIMULATED_TARGETS = [
    "results/analytic/simulated_vs_analytic.json",
    "results/plots/analytic_simulated_vs_analytic.png",
]


rule analytic_sigma_table:
    output:
        table="results/analytic/sigma_table.h5",
    params:
        fiducial=canonical(config["cosmology"]["fiducial"]),
        omega_m_range=analytic_omega_m_range(),
        settings=canonical(config["analytic"]["sigma_table"]),
    log:
        "logs/analytic/sigma_table.log",
    benchmark:
        "results/benchmarks/analytic/sigma_table.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/analytic.yaml"
    script:
        "../scripts/analytic_sigma_table.py"


rule analytic_mocks:
    input:
        sigma="results/analytic/sigma_table.h5",
        table="results/xray/emission_table.h5",
    output:
        xod="results/analytic/xod/chunk_{chunk}.h5",
    params:
        design=chunk_params,
        seed=config["seed"],
        model=analytic_model(),
        fiducial=analytic_fiducial(),
        area_deg2=config["analytic"]["area_deg2"],
        batch_size=config["analytic"]["batch_size"],
    log:
        "logs/analytic/xod/chunk_{chunk}.log",
    benchmark:
        "results/benchmarks/analytic/xod/chunk_{chunk}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/analytic.yaml"
    script:
        "../scripts/analytic_mocks.py"


rule analytic_fisher:
    input:
        sigma="results/analytic/sigma_table.h5",
        table="results/xray/emission_table.h5",
    output:
        fisher="results/analytic/fisher.json",
    params:
        model=analytic_model(),
        fiducial=analytic_fiducial(),
        priors=canonical(config["priors"]),
        fisher=canonical(config["analytic"]["fisher"]),
        area_deg2=config["analytic"]["area_deg2"],
    log:
        "logs/analytic/fisher.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/analytic.yaml"
    script:
        "../scripts/analytic_fisher.py"


rule plot_analytic_fisher:
    input:
        fisher="results/analytic/fisher.json",
    output:
        plot=report("results/plots/analytic_fisher.png", caption="../report/analytic_fisher.rst", category="Analytic"),
    log:
        "logs/plots/analytic_fisher.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/analytic.yaml"
    script:
        "../scripts/plot_analytic_fisher.py"


rule exact_posterior_part:
    input:
        training="results/training/xod.h5",
        sigma="results/analytic/sigma_table.h5",
        table="results/xray/emission_table.h5",
    output:
        part="results/analytic/exact/part_{part}.h5",
    params:
        model=analytic_model(),
        fiducial=analytic_fiducial(),
        priors=canonical(config["priors"]),
        exact=canonical(config["analytic"]["exact"]),
        area_deg2=config["analytic"]["area_deg2"],
        seed=config["seed"],
    wildcard_constraints:
        part=r"\d{3}",
    log:
        "logs/analytic/exact/part_{part}.log",
    benchmark:
        "results/benchmarks/analytic/exact/part_{part}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    conda:
        "../../envs/analytic.yaml"
    script:
        "../scripts/exact_posterior_part.py"


rule gather_exact_posteriors:
    input:
        parts=expand("results/analytic/exact/part_{part}.h5", part=exact_parts()),
    output:
        posteriors="results/analytic/exact_posteriors.h5",
    log:
        "logs/analytic/exact_posteriors.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analytic.yaml"
    script:
        "../scripts/gather_exact_posteriors.py"


rule npe_vs_exact:
    input:
        exact="results/analytic/exact_posteriors.h5",
        compressed="results/compressed/xod.h5",
        npe="results/models/npe/xod.pt",
    output:
        samples="results/analytic/npe_posteriors.h5",
        table="results/analytic/npe_vs_exact.csv",
        summary="results/analytic/npe_vs_exact.json",
    params:
        priors=canonical(config["priors"]),
        n_samples=config["infer"]["n_posterior_samples"],
        seed=config["infer"]["seed"],
    log:
        "logs/analytic/npe_vs_exact.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/analytic.yaml"
    script:
        "../scripts/npe_vs_exact.py"


rule plot_npe_vs_exact:
    input:
        exact="results/analytic/exact_posteriors.h5",
        npe="results/analytic/npe_posteriors.h5",
        table="results/analytic/npe_vs_exact.csv",
    output:
        plot=report("results/plots/analytic_npe_vs_exact.png", caption="../report/analytic_npe_vs_exact.rst", category="Analytic"),
    params:
        priors=canonical(config["priors"]),
    log:
        "logs/plots/analytic_npe_vs_exact.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analytic.yaml"
    script:
        "../scripts/plot_npe_vs_exact.py"


rule simulated_vs_analytic:
    input:
        xods=per_chunk("results/xod/chunk_{chunk}.h5"),
        sigma="results/analytic/sigma_table.h5",
        table="results/xray/emission_table.h5",
    output:
        comparison="results/analytic/simulated_vs_analytic.json",
    params:
        model=analytic_model(),
        fiducial=analytic_fiducial(),
        area_deg2=simulated_xod_area_deg2(),
        z_range=[config["simulation"]["lightcone"]["z_min"], config["simulation"]["lightcone"]["z_max"]],
        batch_size=config["analytic"]["batch_size"],
    log:
        "logs/analytic/simulated_vs_analytic.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/analytic.yaml"
    script:
        "../scripts/simulated_vs_analytic.py"


rule plot_simulated_vs_analytic:
    input:
        comparison="results/analytic/simulated_vs_analytic.json",
    output:
        plot=report("results/plots/analytic_simulated_vs_analytic.png", caption="../report/analytic_simulated_vs_analytic.rst", category="Analytic"),
    log:
        "logs/plots/analytic_simulated_vs_analytic.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../../envs/analytic.yaml"
    script:
        "../scripts/plot_simulated_vs_analytic.py"
