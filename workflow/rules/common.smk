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

try:
    # the checkout's schema file itself (not a cached copy): stage sections sit beside it
    validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
    DESIGN = DesignSpec.from_config(config)
except (ConfigError, ValueError) as err:
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


def final_outputs():
    """The default target: the foundation, the configured analysis's
    observables and summaries, and the inference on them.

    Each analysis's outputs come from a function defined in its own rules file
    (scaling_outputs, ldl_outputs, xod_outputs below).
    """
    outputs = [
        "results/config/resolved.yaml",
        "results/design/parameters.csv",
        "results/plots/design.png",
        "results/plots/linear_power.png",
        *per_chunk("results/linear_power/chunk_{chunk}.h5"),
    ]
    if config["analysis"] == "scaling":
        outputs += scaling_outputs()
    else:
        outputs += ldl_outputs() + xod_outputs()
    return outputs + inference_outputs()


def inference_outputs():
    """Posteriors, calibration and plots per inferred training set (compress.smk, infer.smk)."""
    plots = ("predicted_vs_true", "corner", "sbc_ranks", "tarp", "training")
    return [
        *expand("results/inference/{summary}/metrics.json", summary=config["inference"]["summaries"]),
        *expand("results/plots/inference/{summary}_{plot}.png", summary=config["inference"]["summaries"], plot=plots),
    ]


def scaling_outputs():
    """Training sets and plots of the scaling-relation analysis (summaries.smk)."""
    return [
        *per_chunk("results/halos/chunk_{chunk}.h5"),
        "results/plots/simulation_power.png",
        "results/plots/halo_mass_function.png",
        "results/plots/density_slice.png",
        *expand("results/training/{summary}.h5", summary=config["summaries"]["kinds"]),
        "results/plots/luminosity_functions.png",
        "results/plots/abundance.png",
        "results/plots/power_spectra.png",
        "results/plots/fields.png",
    ]


def ldl_outputs():
    """Trained LDL models and their plots (ldl.smk); the painted gas is an intermediate that
    the X-ray stage consumes."""
    return [
        "results/models/ldl/ne.npz",
        "results/models/ldl/t.npz",
        "results/models/ldl/training_summary.json",
        "results/plots/ldl_ne_rho.png",
        "results/plots/ldl_slices.png",
        "results/plots/ldl_training.png",
    ]


def xod_outputs():
    """X-ray maps, detections, XODs and the XOD training set (xray.smk, xod.smk)."""
    outputs = [
        *per_chunk("results/xray/maps/chunk_{chunk}.h5"),
        *per_chunk("results/xray/catalogs/chunk_{chunk}.h5"),
        "results/training/xod.h5",
        "results/plots/xray_slab_map.png",
        "results/plots/xray_lightcone_map.png",
        "results/plots/xray_cr_hr_dndz.png",
        "results/plots/xod_slices.png",
    ]
    if config["xod"]["observation"]["catalogue_csv"]:
        outputs.append("results/observation/xod.h5")
    return outputs
