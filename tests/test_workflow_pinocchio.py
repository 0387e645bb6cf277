"""The scaling analysis on the real Pinocchio V5.1, run by Snakemake on tests/config/tiny_pinocchio.yaml.

The executable is built once per session from ``../shared/vendor`` by ``make pinocchio``
(fixture ``pinocchio_executable``, tests/pinocchio_build.py); without those sources the module
skips. The run goes through the inference (default target). Checks, on its outputs:

- one simulation run again outside the workflow, from a parameter file written here by hand
  (not by clustersbi.pinocchio) with the seed and cosmology the halo file records, gives the
  same halos: the same count, and masses, positions and velocities equal bit for bit;
- the mass function of all 12 boxes pooled, against colossus' Watson et al. (2013) FoF fit;
- finite summaries and posterior samples, the backend's validation plot and only that one.

The run costs ~1 minute of CPU (58 s measured; 2 minutes wall on a 2-core machine shared with
other work): one job per stage, Pinocchio itself ~1 s a box.

Mass function, measured (12 boxes of 128 Mpc/h, 32^3 particles of 4.1-8.2e12 Msun/h, z = 0.1,
Omega_m 0.2-0.4, sigma_8 0.7-0.9; N pooled halos per bin of particle number, N_pred the fit
integrated over the same bins in each box's own cosmology and summed):

    particles   10-15 15-22 22-33 33-50 50-75 75-112 112-170 170-1000
    N             651   393   229   142    52     31      13        3
    N_pred      711.0 407.1 253.5 141.8  70.1   32.3    13.7      6.5
    N/N_pred    0.916 0.965 0.903 1.001 0.742  0.961   0.950    0.463

1514 halos against 1636 predicted (0.925, Poisson error 2.5%). Tolerances: a halo of 10-50
particles has a mass uncertain by its discreteness and by Pinocchio's fragmentation (calibrated
on N-body FoF halos; Munari et al. 2017 report its mass function within ~5-10% of theirs), and
the Watson fit itself scatters by ~10% around its simulations; colossus uses an Eisenstein & Hu
spectrum rather than CAMB's. So the pooled count must be within HMF_TOTAL_RTOL = 15% of the fit,
and each bin within HMF_POISSON_SIGMAS = 3 Poisson deviations plus HMF_BIN_RTOL = 15% of its
prediction.
"""

from __future__ import annotations

import copy
import os
import subprocess

import h5py
import numpy as np
import pytest
import yaml

from clustersbi.config import load_yaml, validate_config
from clustersbi.pinocchio import read_catalogue_binary
from workflow_runs import snakemake

pytestmark = pytest.mark.slow

#: particle-number bin edges of the mass-function check (halos have >= 10 particles)
HMF_PARTICLE_EDGES = np.array([10, 15, 22, 33, 50, 75, 112, 170, 1000])
HMF_TOTAL_RTOL = 0.15
HMF_BIN_RTOL = 0.15
HMF_POISSON_SIGMAS = 3.0
#: Pinocchio's particle mass (its own constants) vs clustersbi's rho_crit * Omega_m * V / N
PARTICLE_MASS_RTOL = 1e-3
PNG_MAGIC = b"\x89PNG"
#: through the inference; the other figures (design, CAMB, summaries, corner) are backend-blind
#: and drawn by the JaxPM run of tests/config/tiny.yaml
TARGETS = ("results/plots/halo_mass_function.png", "results/inference/abundance+power_spectrum/samples.h5")

#: A Pinocchio V5 parameter file written by hand (the keys of the V5.1 sample parameter file),
#: filled from what the halo file records: the workflow's own writer is not used.
PARAMETER_TEMPLATE = """\
RunFlag                outside
OutputList             outputs
BoxSize                {box!r}
BoxInH100
GridSize               {n_mesh}
RandomSeed             {seed}
Omega0                 {Omega_m!r}
OmegaLambda            {Omega_L!r}
OmegaBaryon            {Omega_b!r}
Hubble100              {h!r}
Sigma8                 {sigma_8!r}
PrimordialIndex        {n_s!r}
DEw0                   -1.0
DEwa                   0.0
TabulatedEoSfile       no
FileWithInputSpectrum  pk.txt
InputSpectrum_UnitLength_in_cm 0
WDM_PartMass_in_kev    0.0
BoundaryLayerFactor    3.0
MaxMem                 {max_mem}
MaxMemPerParticle      300
PredPeakFactor         0.8
OutputInH100
NumFiles               1
MinHaloMass            {min_particles}
AnalyticMassFunction   9
StartingzForPLC        -1
LastzForPLC            0.0
PLCAperture            30
"""


@pytest.fixture(scope="module")
def config(repo, pinocchio_executable) -> dict:
    raw = load_yaml(repo / "tests" / "config" / "tiny_pinocchio.yaml")
    raw["pinocchio"]["executable"] = str(pinocchio_executable)
    return raw


@pytest.fixture(scope="module")
def resolved(repo, config) -> dict:
    return validate_config(copy.deepcopy(config), repo / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture(scope="module")
def pinocchio_run(repo, config, tmp_path_factory):
    """The tiny Pinocchio analysis through the inference, with the simulations' validation plot."""
    workdir = tmp_path_factory.mktemp("tiny_pinocchio_run")
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    proc = snakemake(repo, workdir, configfile, *TARGETS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir


def halo_groups(workdir):
    """(chunk file, group name, attributes, halo datasets) of every simulation, in order."""
    out = []
    for path in sorted((workdir / "results" / "halos").glob("chunk_*.h5")):
        with h5py.File(path, "r") as f:
            for name in sorted(n for n in f if n.startswith("sim_")):
                g = f[name]
                out.append((path, name, dict(g.attrs), {k: g[k][()] for k in g}))
    return out


def test_halo_files_record_the_pinocchio_runs(pinocchio_run, resolved):
    groups = halo_groups(pinocchio_run)
    assert len(groups) == resolved["design"]["n_simulations"]
    for path, name, attrs, data in groups:
        where = f"{path.name}/{name}"
        assert attrs["backend"] == "pinocchio", where
        assert attrs["pinocchio_seed"] == attrs["seed"] % 2**31, where
        assert attrs["n_halos"] == len(data["mass_msun_h"]) > 50, f"{where}: {attrs['n_halos']} halos"
        assert not {"pk_k", "density_slice"} & set(data), f"{where}: a Pinocchio run stores no particle products"
        n_part = data["n_part"]
        assert n_part.min() >= resolved["simulation"]["fof"]["min_particles"], where
        np.testing.assert_allclose(data["mass_msun_h"] / n_part, attrs["particle_mass_msun_h"], rtol=PARTICLE_MASS_RTOL,
                                   err_msg=where)
        box = attrs["box_mpc_h"]
        for axis in "xyz":
            assert np.all((data[axis] >= 0) & (data[axis] <= box)), f"{where}: {axis} outside the box"
        log = pinocchio_run / "logs" / "halos" / f"pinocchio_{attrs['index']:06d}.log"
        assert "This is pinocchio V5.1" in log.read_text(), f"{where}: Pinocchio's own log"


def test_halos_equal_a_run_outside_the_workflow(pinocchio_run, resolved, pinocchio_executable, tmp_path):
    """The last simulation, run again by hand with the seed and cosmology the halo file records."""
    path, name, attrs, data = halo_groups(pinocchio_run)[-1]
    with h5py.File(pinocchio_run / "results" / "linear_power" / path.name, "r") as f:
        k, z = f["k_h_mpc"][()], f["redshifts"][()]
        pk = f[name]["pk"][()][int(np.argmin(np.abs(z)))]  # the CAMB P(k) at z = 0, as the workflow gives it
    # the table format of the workflow's input spectrum (the digits reach Pinocchio's spline)
    np.savetxt(tmp_path / "pk.txt", np.column_stack([k, pk]), fmt="%.8e")
    (tmp_path / "outputs").write_text(f"{attrs['z']:.6f}\n")
    cosmo = {n.removeprefix("cosmo_"): v for n, v in attrs.items() if n.startswith("cosmo_")}
    (tmp_path / "parameters").write_text(PARAMETER_TEMPLATE.format(
        box=float(attrs["box_mpc_h"]), n_mesh=int(attrs["n_mesh"]), seed=int(attrs["seed"]) % 2**31,
        Omega_m=float(cosmo["Omega_m"]), Omega_L=1.0 - float(cosmo["Omega_m"]), Omega_b=float(cosmo["Omega_b"]),
        h=float(cosmo["h"]), sigma_8=float(cosmo["sigma_8"]), n_s=float(cosmo["n_s"]),
        max_mem=resolved["pinocchio"]["max_mem_mb"], min_particles=resolved["simulation"]["fof"]["min_particles"],
    ))
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    proc = subprocess.run(["mpirun", "-np", str(resolved["pinocchio"]["n_tasks"]), str(pinocchio_executable), "parameters"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    outside = read_catalogue_binary(tmp_path / f"pinocchio.{attrs['z']:.4f}.outside.catalog.out")
    assert len(outside) == len(data["mass_msun_h"]) == attrs["n_halos"]
    # the same reader orders both tables (most massive first); the workflow stores float64 copies
    # of Pinocchio's float32 values, so they must be equal, not close
    for column in ("mass_msun_h", "n_part", "x", "y", "z", "vx", "vy", "vz"):
        np.testing.assert_array_equal(data[column], outside[column].to_numpy(), err_msg=column)


def test_mass_function_matches_watson13(pinocchio_run):
    import colossus.settings
    from colossus.cosmology import cosmology as colossus_cosmology
    from colossus.lss import mass_function

    colossus.settings.PERSISTENCE = ""
    counts = np.zeros(len(HMF_PARTICLE_EDGES) - 1)
    predicted = np.zeros_like(counts)
    for _, _, attrs, data in halo_groups(pinocchio_run):
        c = {n.removeprefix("cosmo_"): float(v) for n, v in attrs.items() if n.startswith("cosmo_")}
        colossus_cosmology.setCosmology("box", params={"flat": True, "H0": 100 * c["h"], "Om0": c["Omega_m"],
                                                        "Ob0": c["Omega_b"], "sigma8": c["sigma_8"], "ns": c["n_s"]})
        # masses are whole particles: edges half a particle below each bound
        edges = (HMF_PARTICLE_EDGES - 0.5) * attrs["particle_mass_msun_h"]
        counts += np.histogram(data["mass_msun_h"], edges)[0]
        for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            m = np.geomspace(lo, hi, 17)
            dn_dlnm = mass_function.massFunction(m, attrs["z"], q_in="M", q_out="dndlnM", mdef="fof", model="watson13")
            predicted[b] += np.trapezoid(dn_dlnm, np.log(m)) * attrs["box_mpc_h"] ** 3
    table = f"particles {HMF_PARTICLE_EDGES.tolist()}\nN {counts.tolist()}\nN_pred {np.round(predicted, 1).tolist()}"
    assert abs(counts.sum() / predicted.sum() - 1) < HMF_TOTAL_RTOL, table
    allowed = HMF_POISSON_SIGMAS * np.sqrt(predicted) + HMF_BIN_RTOL * predicted
    assert np.all(np.abs(counts - predicted) <= allowed), table


def test_summaries_and_posterior_are_finite(pinocchio_run, resolved):
    from clustersbi.compress.data import load_training_set

    n_mocks = resolved["design"]["n_simulations"] * resolved["design"]["n_inner"]
    ts = load_training_set(pinocchio_run / "results" / "training" / "abundance+power_spectrum.h5")
    assert ts.theta.shape == (n_mocks, 4)
    for kind, x in ts.x.items():
        assert x.shape[0] == n_mocks and np.all(np.isfinite(x)), kind
    abundance = ts.x["abundance"]
    assert np.all(np.diff(abundance, axis=1) <= 0), "cumulative abundance must fall with the threshold"
    assert abundance[:, 0].min() > 0, "every mock has clusters above the lowest threshold"
    out = pinocchio_run / "results" / "inference" / "abundance+power_spectrum"
    with h5py.File(out / "samples.h5", "r") as f:
        samples = f["observation_samples"][()]
    assert samples.shape == (resolved["infer"]["n_posterior_samples"], 4) and np.all(np.isfinite(samples))


def test_validation_plots_by_backend(repo, pinocchio_run, config, tmp_path):
    """The mass function of Pinocchio halos is drawn; P(k) and the density slice (PM only) are not
    requested (the run above would have failed on them) and cannot be drawn from a Pinocchio file."""
    from clustersbi.plots.simulate import plot_simulation_validation

    plots = pinocchio_run / "results" / "plots"
    assert (plots / "halo_mass_function.png").read_bytes()[:4] == PNG_MAGIC
    assert not (plots / "simulation_power.png").exists() and not (plots / "density_slice.png").exists()
    halos = pinocchio_run / "results" / "halos" / "chunk_00000.h5"
    power = pinocchio_run / "results" / "linear_power" / "chunk_00000.h5"
    with pytest.raises(ValueError, match=r"pinocchio runs have no data for the plots \['power'\]"):
        plot_simulation_validation(halos, power, {"mass_function": tmp_path / "m.png", "power": tmp_path / "p.png"})
