# Config validation and the input functions shared by the stages.
import functools
import sys
from pathlib import Path

# The rules' scripts import clustersbi from this checkout's src/, whether or not it was
# pip-installed, and in every software environment (plain, conda, SLURM jobs inherit it).
_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)

from snakemake.exceptions import WorkflowError

from clustersbi.config import ConfigError, canonical, prepend_to_pythonpath, validate_config
from clustersbi.design import DesignSpec, chunk_design, n_chunks
from clustersbi.lightcone import slab_mesh_omega_m
from clustersbi.pinocchio import PinocchioError, check_executable
from clustersbi.stages.analytic import check_analytic_config
from clustersbi.xod import XOD_STATISTICS, statistic_marginal

try:
    # the checkout's schema file itself (not a cached copy): stage sections sit beside it
    validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
    DESIGN = DesignSpec.from_config(config)
    if config["analysis"] == "analytic":
        check_analytic_config(config)
    if config["simulation"]["backend"] == "pinocchio":
        # the external executable and its launcher, before any job runs
        check_executable(config["pinocchio"])
except (ConfigError, PinocchioError, ValueError) as err:
    raise WorkflowError(f"config error: {err}") from None

prepend_to_pythonpath(_SRC)

CHUNKS = [f"{c:05d}" for c in range(n_chunks(DESIGN))]


@functools.lru_cache(maxsize=None)
def design_of_chunk(chunk):
    """The chunk's parameters, seeds and splits, computed at DAG time (rule params).

    Inner (nested) rows are computed by the jobs themselves (design.chunk_inner_rows).
    """
    return chunk_design(DESIGN, int(chunk), with_inner=False)


def chunk_params(wildcards):
    return design_of_chunk(wildcards.chunk)


def linear_power_redshifts():
    """Redshifts at which later stages need the linear P(k) (z = 0 always)."""
    return sorted({0.0, *map(float, config["cosmology"]["redshifts"])})


def lightcone_mesh_omega_m():
    """Omega_m that sizes the fixed slab mesh (simulation.lightcone.fixed_mesh), or None."""
    if not config["simulation"]["lightcone"]["fixed_mesh"]:
        return None
    return slab_mesh_omega_m(config["priors"]["cosmology"], config["cosmology"]["fiducial"]["Omega_m"])


def per_chunk(pattern):
    return expand(pattern, chunk=CHUNKS)


def intermediate(path):
    """A large intermediate output (particles, 3D gas grids): temp() unless keep_intermediate."""
    return path if config["keep_intermediate"] else temp(path)


def box_simulation_config():
    """The ``simulation`` keys box runs read (lightcone geometry excluded)."""
    return canonical({k: v for k, v in config["simulation"].items() if k != "lightcone"})


def simulation_plots():
    """The validation plots of what the backend produces: the halo mass function always; the
    matter P(k) and a density slice only for PM runs (Pinocchio keeps no particles)."""
    caption = "halo_mass_function_pinocchio" if config["simulation"]["backend"] == "pinocchio" else "halo_mass_function"
    plots = {"mass_function": report("results/plots/halo_mass_function.png", caption=f"../report/{caption}.rst",
                                     category="Simulations")}
    if config["simulation"]["backend"] == "jaxpm":
        plots["power"] = report("results/plots/simulation_power.png", caption="../report/simulation_power.rst",
                                category="Simulations")
        plots["slice"] = report("results/plots/density_slice.png", caption="../report/density_slice.rst",
                                category="Simulations")
    return plots


def lightcone_simulation_config():
    """The ``simulation`` keys lightcone runs read; not ``lightcone.forward``, which picks the rule
    that makes the maps (a switch reruns the maps, not the staged chain's particle files)."""
    lightcone = {k: v for k, v in config["simulation"]["lightcone"].items() if k != "forward"}
    return canonical({"a_init": config["simulation"]["a_init"], "n_steps": config["simulation"]["n_steps"],
                      "lightcone": lightcone})


def xod_binning():
    """What an XOD depends on: the bin edges and the inference statistic."""
    return canonical({"bins": config["xod"]["bins"], "marginal": config["xod"]["marginal"]})


def observed_summary(summary):
    """The compressed observation a survey catalogue gives the posterior of ``summary``, or None.

    With ``xod.observation.catalogue_csv`` set, the ``xod`` posterior's observation is that
    catalogue's XOD, compressed by the xod compressor (rules observed_xod, compress_observation);
    every other posterior keeps ``infer.observation``.
    """
    if summary == "xod" and config["xod"]["observation"]["catalogue_csv"]:
        return f"results/observation/compressed/{summary}.h5"
    return None


def observation_input(wildcards):
    """The compressed survey observation evaluate_npe reads, if any."""
    path = observed_summary(wildcards.summary)
    return [path] if path else []


def infer_params(wildcards):
    """The ``infer`` section for evaluate_npe; with a survey catalogue its observation is that file."""
    infer = dict(config["infer"])
    path = observed_summary(wildcards.summary)
    if path:
        infer["observation"] = {"kind": "file", "file": path, "index": None}
    return canonical(infer)


def xod_chunk_files(wildcards=None):
    """The per-chunk XOD files the training set gathers: LDL detections, or analytic mocks."""
    if config["analysis"] == "analytic":
        return per_chunk("results/analytic/xod/chunk_{chunk}.h5")
    return per_chunk("results/xod/chunk_{chunk}.h5")


def emission_table_z_max():
    """Largest redshift of the emission table: the lightcones', and the analytic XOD's top z edge."""
    z_max = config["simulation"]["lightcone"]["z_max"]
    if config["analysis"] == "analytic":
        return max(z_max, config["xod"]["bins"]["z"]["high"])
    return z_max


def compressor_threads(wildcards):
    """Threads of a compressor's training: 1 when every input of the summary is an MLP (dense
    layers this small run no faster on two threads, and many times slower when another job
    shares the cores: benchmarks/RESULTS.md), else 2 (convolutional extractors)."""
    kinds = wildcards.summary.split("+")
    return 1 if all(config["compress"]["inputs"][k]["extractor"] == "mlp" for k in kinds) else 2


def catalogue_chunk_inputs(wildcards):
    """What a chunk's feature tables are made of: the halo catalogues and the summaries file
    (its list of empty mocks) for scaling; the detections and their maps for ldl."""
    if config["analysis"] == "scaling":
        return {"catalogs": f"results/catalogs/chunk_{wildcards.chunk}.h5",
                "summaries": f"results/summaries/chunk_{wildcards.chunk}.h5"}
    return {"catalogs": f"results/xray/catalogs/chunk_{wildcards.chunk}.h5",
            "maps": f"results/xray/maps/chunk_{wildcards.chunk}.h5"}


def simulation_cutout_inputs(wildcards):
    """The lightcone particle and painted-gas files of the chunks that source 'simulation' images."""
    if config["images"]["source"] != "simulation":
        return {}
    chunks = CHUNKS[: config["images"]["simulation"]["n_chunks"]]
    return {"particles": [f"results/particles/chunk_{c}.h5" for c in chunks],
            "gas": [f"results/gas/chunk_{c}.h5" for c in chunks]}


def compressor_settings(summary):
    """The ``compress`` keys the compressor of ``summary`` depends on: its kinds' inputs, the
    catalogue encoder's settings for the catalogue only, never the Optuna search (tune)."""
    kinds = summary.split("+")
    settings = {k: v for k, v in config["compress"].items() if k not in ("tune", "inputs", "encoder")}
    settings["inputs"] = {k: config["compress"]["inputs"][k] for k in kinds if k in config["compress"]["inputs"]}
    if "catalogue" in kinds:
        settings["encoder"] = config["compress"]["encoder"]
    return canonical(settings)


def analytic_model():
    """What the expected XOD depends on besides the parameters: XOD bins, CR cut, quadrature, L-T band."""
    return canonical({
        "xod": xod_binning(),
        "cr_cut_cts_s": config["detection"]["cr_cut_cts_s"],
        "quadrature": config["analytic"]["quadrature"],
        "lt_band_kev": config["analytic"]["lt_band_kev"],
    })


def analytic_fiducial():
    """Values of the parameters without a prior: Omega_m, sigma_8 of the cosmology, the XXL relations'."""
    cosmo = config["cosmology"]["fiducial"]
    return canonical({"Omega_m": cosmo["Omega_m"], "sigma_8": cosmo["sigma_8"], **config["analytic"]["fiducial"]})


def simulated_xod_area_deg2():
    """Sky area of one simulated XOD [deg^2]: its n_lightcones lightcones of fov_deg2 each."""
    lightcone = config["simulation"]["lightcone"]
    return lightcone["fov_deg2"] * lightcone["n_lightcones"]


def analytic_omega_m_range():
    """Omega_m range the sigma table covers: the Omega_m prior's and the Fisher point's."""
    values = [config["cosmology"]["fiducial"]["Omega_m"]]
    values += [b for p in config["priors"]["cosmology"] if p["name"] == "Omega_m" for b in (p["low"], p["high"])]
    values += [v for k, v in config["analytic"]["fisher"]["point"].items() if k in ("Omega_m", "omega_m")]
    return [min(values), max(values)]


def exact_parts():
    """Job numbers of the exact posteriors (analytic.exact.xods_per_job XODs each)."""
    exact = config["analytic"]["exact"]
    return [f"{p:03d}" for p in range(-(-exact["n_posteriors"] // exact["xods_per_job"]))]


def final_outputs():
    """The default target: the design and cosmology stages (the design only for the analytic
    analysis), the configured analysis's observables and summaries, and the inference on them;
    with analysis ldl, the simulated XODs against the analytic model too.

    Each stage's products are the ``*_TARGETS`` list of its own rules file (the catalogue
    encoder's interpretation when ``inference.summaries`` names the catalogue).
    """
    if config["analysis"] == "analytic":
        # no simulation: no linear power per design point either
        return DESIGN_TARGETS + ANALYTIC_TARGETS + INFER_TARGETS
    if config["analysis"] == "cluster_images":
        # per-cluster images and masses (the mass CNN and the U-Net mass maps), no cosmological
        # inference
        return IMAGES_TARGETS + MASS_MAPS_TARGETS
    outputs = DESIGN_TARGETS + COSMOLOGY_TARGETS
    if config["analysis"] == "scaling":
        outputs += SIMULATE_TARGETS + SUMMARIES_TARGETS
    else:
        outputs += LDL_TARGETS + XRAY_TARGETS + XOD_TARGETS + ANALYTIC_VS_SIMULATED_TARGETS
    return outputs + CATALOGUE_TARGETS + INFER_TARGETS
