# X-ray stage (analysis: ldl): emission table once per config, count-rate maps per lightcone
# slab and sep detections per chunk (cerardi section 2.3), and their figures.


# X-ray maps, detections and their figures
XRAY_TARGETS = [
    *per_chunk("results/xray/maps/chunk_{chunk}.h5"),
    *per_chunk("results/xray/catalogs/chunk_{chunk}.h5"),
    "results/plots/xray_slab_map.png",
    "results/plots/xray_lightcone_map.png",
    "results/plots/xray_cr_hr_dndz.png",
]


rule emission_table:
    output:
        table="results/xray/emission_table.h5",
    params:
        xray=canonical({k: v for k, v in config["xray"].items() if k not in ("pixel_arcmin", "realistic")}),
        z_max=emission_table_z_max(),
    log:
        "logs/xray/emission_table.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/xray.yaml"
    script:
        "../scripts/emission_table.py"


# The maps of a chunk: by the staged chain (the gas file of paint_gas, which reads the particle
# file of simulate_lightcone) or, with simulation.lightcone.forward: fused, in one job from the
# chunk's linear power by one device program per slab (no particle or gas file; the staged rules
# stay defined for what reads those files: images.source simulation).
if config["simulation"]["lightcone"]["forward"] == "fused":

    rule fused_xray_maps:
        input:
            linear_power="results/linear_power/chunk_{chunk}.h5",
            ne="results/models/ldl/ne.npz",
            t="results/models/ldl/t.npz",
            table="results/xray/emission_table.h5",
        output:
            maps="results/xray/maps/chunk_{chunk}.h5",
        params:
            design=chunk_params,
            seed=config["seed"],
            # what simulate_lightcone and xray_maps read: the same params give the same maps
            simulation=lightcone_simulation_config(),
            mesh_omega_m=lightcone_mesh_omega_m(),
            xray=canonical({k: config["xray"][k] for k in ("pixel_arcmin", "realistic")}),
        log:
            "logs/xray/maps/chunk_{chunk}.log",
        benchmark:
            "results/benchmarks/xray/maps/chunk_{chunk}.tsv"
        # JAX: one reserved thread (see simulate.smk); profiles/slurm gives it a GPU
        threads: 1
        resources:
            mem_mb=8000,
            runtime=240,
        conda:
            "../../envs/ldl.yaml"
        script:
            "../scripts/fused_xray_maps.py"

else:

    rule xray_maps:
        input:
            gas="results/gas/chunk_{chunk}.h5",
            table="results/xray/emission_table.h5",
        output:
            maps="results/xray/maps/chunk_{chunk}.h5",
        params:
            design=chunk_params,
            seed=config["seed"],
            xray=canonical({k: config["xray"][k] for k in ("pixel_arcmin", "realistic")}),
            fov_deg2=config["simulation"]["lightcone"]["fov_deg2"],
        log:
            "logs/xray/maps/chunk_{chunk}.log",
        benchmark:
            "results/benchmarks/xray/maps/chunk_{chunk}.tsv"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=120,
        conda:
            "../../envs/xray.yaml"
        script:
            "../scripts/xray_maps.py"


rule detect_sources:
    input:
        maps="results/xray/maps/chunk_{chunk}.h5",
    output:
        catalogs="results/xray/catalogs/chunk_{chunk}.h5",
    params:
        detection=canonical(config["detection"]),
    log:
        "logs/xray/catalogs/chunk_{chunk}.log",
    benchmark:
        "results/benchmarks/xray/catalogs/chunk_{chunk}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/xray.yaml"
    script:
        "../scripts/detect_sources.py"


rule plot_xray:
    input:
        maps=f"results/xray/maps/chunk_{CHUNKS[0]}.h5",
        catalogs=per_chunk("results/xray/catalogs/chunk_{chunk}.h5"),
    output:
        slab=report("results/plots/xray_slab_map.png", caption="../report/xray_slab_map.rst", category="X-ray"),
        lightcone=report("results/plots/xray_lightcone_map.png", caption="../report/xray_lightcone_map.rst", category="X-ray"),
        cr_hr=report("results/plots/xray_cr_hr_dndz.png", caption="../report/xray_cr_hr_dndz.rst", category="X-ray"),
    params:
        xod_bins=canonical(config["xod"]["bins"]),
    log:
        "logs/plots/xray.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/xray.yaml"
    script:
        "../scripts/plot_xray.py"
