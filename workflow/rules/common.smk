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

try:
    # the checkout's schema file itself (not a cached copy): stage sections sit beside it
    validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
    DESIGN = DesignSpec.from_config(config)
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


def lightcone_simulation_config():
    """The ``simulation`` keys lightcone runs read."""
    return canonical({k: config["simulation"][k] for k in ("a_init", "n_steps", "lightcone")})


def xod_binning():
    """What an XOD depends on: the bin edges and the inference statistic."""
    return canonical({"bins": config["xod"]["bins"], "marginal": config["xod"]["marginal"]})


def final_outputs():
    """The default target: the design and cosmology stages, the configured analysis's
    observables and summaries, and the inference on them.

    Each stage's products are the ``*_TARGETS`` list of its own rules file.
    """
    outputs = DESIGN_TARGETS + COSMOLOGY_TARGETS
    if config["analysis"] == "scaling":
        outputs += SIMULATE_TARGETS + SUMMARIES_TARGETS
    else:
        outputs += LDL_TARGETS + XRAY_TARGETS + XOD_TARGETS
    return outputs + INFER_TARGETS
