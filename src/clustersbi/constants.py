"""Physical constants, defined once (CGS unless the name says otherwise).

Sources: CODATA 2018 (Tiesinga et al. 2021, Rev. Mod. Phys. 93, 025010), exact where the SI
definition is exact (c, h, k_B, e); the astronomical units from IAU 2012 B2 (au) and IAU 2015
B3 (nominal solar mass parameter, with G of CODATA 2018); the critical density from the
Particle Data Group's Astrophysical Constants (2022): rho_crit = 3 H0^2 / (8 pi G) for
H0 = 100 h km/s/Mpc.

Gas composition, one for the whole chain (the gas model's n_e and T, the X-ray stage's
emission measure and bremsstrahlung): primordial hydrogen mass fraction X_H = 0.76 (helium
Y = 1 - X_H = 0.24; Planck 2018 BBN gives Y_P = 0.245), the value IllustrisTNG and CAMELS
use and record their ``ElectronAbundance`` against, fully ionised H and He, and m_He = 4 m_H:

    n_He / n_H = Y / (4 X_H) = 0.0789,    n_e / n_H = 1 + 2 n_He / n_H = 1 + Y / (2 X_H) = 1.158.

Metals are left out: fully ionised, Anders & Grevesse (1989) metals at 0.3 solar would add
~0.004 to n_e / n_H (< 0.5%). (The AG89 *solar* mixture, n_He / n_H = 0.0977, gives 1.195: a
photospheric helium abundance, not the primordial gas of the simulations.) APEC tables carry
their own (AG89) helium; against this composition that changes their H + He continuum by a
few per cent, well below their line emission (FACTS.md).
"""

from __future__ import annotations

__all__ = [
    "SIGMA_T_CM2",
    "M_E_C2_KEV",
    "SPEED_OF_LIGHT_KM_S",
    "C_CM_S",
    "H0_KM_S_MPC_H",
    "HUBBLE_DISTANCE_MPC_H",
    "MPC_CM",
    "MSUN_G",
    "M_P_G",
    "M_E_G",
    "E_ESU",
    "H_ERG_S",
    "K_B_ERG_K",
    "KEV_ERG",
    "K_B_KEV_PER_K",
    "RHO_CRIT_H2_G_CM3",
    "RHO_CRIT_MSUN_H_MPC_H3",
    "X_H",
    "HE_TO_H_NUMBER",
    "NE_OVER_NH",
]

#: Speed of light [km/s] (exact).
SPEED_OF_LIGHT_KM_S = 299792.458
#: Speed of light [cm/s] (exact).
C_CM_S = 2.99792458e10
#: H0 in units of h: 100 km/s per Mpc/h.
H0_KM_S_MPC_H = 100.0
#: c / H0: the Hubble distance [Mpc/h].
HUBBLE_DISTANCE_MPC_H = SPEED_OF_LIGHT_KM_S / H0_KM_S_MPC_H
#: 1 Mpc [cm] (1 pc = 648000 / pi au, au = 1.495978707e13 cm exactly).
MPC_CM = 3.0856775814913673e24
#: Solar mass [g] (IAU 2015 nominal GM_sun / G, CODATA 2018 G).
MSUN_G = 1.988409870698051e33
#: Proton mass [g].
M_P_G = 1.67262192369e-24
#: Electron mass [g].
M_E_G = 9.1093837015e-28
#: Elementary charge [esu] (statcoulomb).
E_ESU = 4.803204712570263e-10
#: Planck constant [erg s] (exact).
H_ERG_S = 6.62607015e-27
#: Boltzmann constant [erg/K] (exact).
K_B_ERG_K = 1.380649e-16
#: 1 keV [erg] (exact).
KEV_ERG = 1.602176634e-9
#: Boltzmann constant [keV/K].
K_B_KEV_PER_K = K_B_ERG_K / KEV_ERG
#: Thomson cross-section [cm^2] and electron rest energy [keV] (CODATA 2018): Compton-y
SIGMA_T_CM2 = 6.6524587321e-25
M_E_C2_KEV = 510.99895
#: Critical density today divided by h^2 [g cm^-3].
RHO_CRIT_H2_G_CM3 = 1.87834e-29
#: Critical density today [h^2 Msun Mpc^-3] = [Msun/h (Mpc/h)^-3].
RHO_CRIT_MSUN_H_MPC_H3 = 2.77536627e11

#: Hydrogen mass fraction of the gas (primordial, as IllustrisTNG / CAMELS; module docstring).
X_H = 0.76
#: n_He / n_H = (1 - X_H) / (4 X_H) (m_He = 4 m_H): 0.0789.
HE_TO_H_NUMBER = (1.0 - X_H) / (4.0 * X_H)
#: n_e / n_H of fully ionised H + He = 1 + 2 n_He / n_H = 1.158 (metals left out, < 0.5%).
NE_OVER_NH = 1.0 + 2.0 * HE_TO_H_NUMBER
