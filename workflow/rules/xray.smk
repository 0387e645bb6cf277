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
