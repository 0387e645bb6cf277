# X-ray stage (analysis: ldl): emission table once per config, count-rate maps per lightcone
# slab and sep detections per chunk (cerardi section 2.3), and their figures.


rule emission_table:
    output:
        "results/xray/emission_table.h5",
    params:
        xray=canonical(config["xray"]),
        z_max=config["simulation"]["lightcone"]["z_max"],
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
        "results/xray/maps/chunk_{chunk}.h5",
    params:
        design=chunk_params,
        seed=config["seed"],
        xray=canonical(config["xray"]),
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


rule detect:
    input:
        "results/xray/maps/chunk_{chunk}.h5",
    output:
        "results/xray/catalogs/chunk_{chunk}.h5",
    params:
        detection=canonical(config["detection"]),
    log:
        "logs/xray/detect/chunk_{chunk}.log",
    benchmark:
        "results/benchmarks/xray/detect/chunk_{chunk}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/xray.yaml"
    script:
        "../scripts/detect.py"


rule plot_xray:
    input:
        maps=f"results/xray/maps/chunk_{CHUNKS[0]}.h5",
        catalogs=per_chunk("results/xray/catalogs/chunk_{chunk}.h5"),
    output:
        slab=report("results/plots/xray_slab_map.png", caption="../report/xray_slab_map.rst", category="X-ray"),
        lightcone=report("results/plots/xray_lightcone_map.png", caption="../report/xray_lightcone_map.rst", category="X-ray"),
        cr_hr=report("results/plots/xray_cr_hr_dndz.png", caption="../report/xray_cr_hr_dndz.rst", category="X-ray"),
    params:
        xod=canonical({"bins": config["xod"]["bins"], "marginal": config["xod"]["marginal"]}),
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
