"""X-ray stage: emission tables, instrument response and lightcone count-rate maps.

Cerardi et al., section 2.3: from n_e and T per voxel to count-rate maps per band and slab.
See :mod:`.emission` (r_b(T, z) tables, backends), :mod:`.response` (ARF/RMF, built-in XMM
EPIC curve, absorption) and :mod:`.maps` (painting, projection, observational effects).
"""

from .emission import (
    ApecBackend,
    ApecEmulatorBackend,
    BremsstrahlungBackend,
    EmissionTable,
    compute_emission_table,
    gaunt_ff_born,
    bremsstrahlung_emissivity_erg_s_cm3_hz,
    make_backend,
)
from .maps import SkyGrid, SlabMap, make_sky_grid, observe, paint_lightcone, paint_slab, voxel_count_rates
from .response import Response, apply_absorption, band_effective_area_cm2, builtin_xmm_epic, load_response, read_arf, read_rmf

__all__ = [
    "ApecBackend",
    "ApecEmulatorBackend",
    "BremsstrahlungBackend",
    "EmissionTable",
    "compute_emission_table",
    "gaunt_ff_born",
    "bremsstrahlung_emissivity_erg_s_cm3_hz",
    "make_backend",
    "SkyGrid",
    "SlabMap",
    "make_sky_grid",
    "observe",
    "paint_lightcone",
    "paint_slab",
    "voxel_count_rates",
    "Response",
    "apply_absorption",
    "band_effective_area_cm2",
    "builtin_xmm_epic",
    "load_response",
    "read_arf",
    "read_rmf",
]
