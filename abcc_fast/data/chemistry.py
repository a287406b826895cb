"""Band, species, reaction and system tables for OpIRSim (docs/opirsim.md, "Chemistry tables").

Where the literature gives a range, the middle of the range is used; where it is silent and the
simulator needs a value, the line is marked ``# assumption`` and says why.

Conventions
-----------
- A band is ``Peak(position cm^-1, height, fwhm cm^-1, eta)`` with ``eta`` the Lorentzian fraction
  of a pseudo-Voigt (liquids 0.5-0.8, solid SEI 0.3-0.6).
- Electrolyte components: ``free`` peaks have relative heights (strongest band = 1.0, the "Rel."
  column); ``peak_per_molar`` is the absorbance (AU, ATR at 1000 cm^-1 reference depth) of the
  strongest band per mol/L of that component. Solvents: 0.8 AU for the neat liquid (``0.8 /
  neat_molar``), a typical single-bounce diamond ATR value.
- Li+-bound (solvent) or ion-paired (anion) spectra are *area exchanges*: ``bound`` maps a
  free peak index to its bound (position, fwhm); the bound peak keeps the free peak's area, so the
  free/bound split moves intensity between fixed sub-bands and produces apparent centroid shifts.
  ``bound_extra`` adds bands that only the bound/paired state has (e.g. PF6- nu1 activation).
- SEI species: ``peaks`` relative heights; ``peak_per_molar`` the film absorbance of the strongest
  band per mol/L of product in the probed volume (film term, flat G_film), chosen so that a
  formation-cycle SEI gives DeltaA 1e-3..1e-2 (typical magnitudes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Peak:
    position: float   # cm^-1
    height: float     # relative (strongest band of the species = 1.0)
    fwhm: float       # cm^-1
    eta: float = 0.65  # Lorentzian fraction of the pseudo-Voigt


@dataclass(frozen=True)
class Component:
    """An electrolyte component (solvent, additive or salt anion) with free and bound spectra."""
    name: str
    kind: str                       # "solvent" | "additive" | "salt"
    free: tuple                     # tuple[Peak, ...]
    bound: dict = field(default_factory=dict)      # free peak index -> (position, fwhm)
    bound_extra: tuple = ()         # tuple[Peak, ...] present only when bound / ion-paired
    peak_per_molar: float = 0.05    # AU of the strongest band per mol/L
    molar_mass: float = 100.0       # g/mol
    density: float = 1.0            # g/mL (neat liquid; salts: not used)
    preference: float = 1.0         # Li+ solvation preference weight w_i; salts: pairing constant
    sites: float = 1.0              # coordination sites per molecule (DME chelates: 2)


def _solvent_ppm(density: float, molar_mass: float) -> float:
    """0.8 AU strongest band for the neat liquid -> AU per mol/L."""
    return 0.8 / (1000.0 * density / molar_mass)


P = Peak
# ---------------------------------------------------------------------------------------------
# Cyclic carbonates
# ---------------------------------------------------------------------------------------------
EC = Component(
    "EC", "solvent",
    free=(P(1800, 1.0, 18), P(1773, 0.6, 18),          # nu(C=O) Fermi doublet (vs + s), FWHM 15-25
          P(1480, 0.15, 12),                           # delta(CH2) scissor
          P(1390, 0.2, 12), P(1420, 0.1, 12),          # CH2 wag (m, w)
          P(1160, 0.8, 25),                            # nu_as(C-O-C) ring 1155-1165 (vs), FWHM 20-30
          P(1070, 0.6, 20),                            # ring C-O 1065-1075 (s)
          P(970, 0.2, 10),                             # CH2 rock / ring
          P(893, 0.08, 10),                            # ring breathing (weak in IR)
          P(717, 0.3, 10),                             # ring/C=O bend, IR solvation marker
          P(2925, 0.05, 15), P(2995, 0.05, 15), P(3030, 0.05, 15)),  # nu(CH2) (w)
    # bound: the Fermi doublet collapses to one broader band ~1765-1775 (-> 1770, FWHM 26);
    # ring C-O-C -> 1190-1200 shoulder; 1070 -> 1085; 970 -> 975; 893 -> 904; 717 -> 728.
    bound={0: (1770, 26), 1: (1770, 26), 2: (1482, 12), 5: (1195, 28), 6: (1085, 20), 7: (975, 10),
           8: (904, 10), 9: (728, 10)},
    peak_per_molar=_solvent_ppm(1.32, 88.06), molar_mass=88.06, density=1.32,
    preference=3.0)   # EC > PC > DMC ~ EMC > DEC > FEC; 3 gives 45 % / 15 % bound EC / DMC in LP30

PC = Component(
    "PC", "solvent",
    free=(P(1790, 1.0, 20),                            # nu(C=O) 1785-1795 (vs)
          P(1485, 0.15, 12), P(1455, 0.12, 12), P(1390, 0.2, 12),  # delta(CH3/CH2) (m)
          P(1180, 0.85, 30),                           # ring nu(C-O-C) (vs, FWHM ~30)
          P(1120, 0.5, 20), P(1050, 0.5, 20),          # (s)
          P(955, 0.1, 12), P(850, 0.08, 12),           # (w)
          P(777, 0.25, 10),                            # (m)
          P(712, 0.3, 10),                             # ring deformation (m)
          P(2990, 0.06, 15), P(2940, 0.05, 15), P(2880, 0.03, 15)),  # nu(CH) (w)
    bound={0: (1765, 26), 10: (725, 10)},              # C=O -> 1760-1770; 712 -> 725
    peak_per_molar=_solvent_ppm(1.205, 102.09), molar_mass=102.09, density=1.205, preference=2.5)

FEC = Component(
    "FEC", "additive",
    free=(P(1830, 1.0, 18), P(1800, 0.3, 15),          # nu(C=O) 1825-1835 (vs) + Fermi partner ~1800
          P(1190, 0.6, 25),                            # ring nu(C-O-C) 1180-1200 (s)
          P(1090, 0.6, 20),                            # nu(C-F) 1080-1100 (s)
          P(1370, 0.15, 12), P(950, 0.15, 12), P(770, 0.2, 10), P(720, 0.15, 10)),  # (w-m)
    bound={0: (1810, 24)},   # assumption: a carbonate-like ~20 cm^-1 red shift; FEC binds weakly anyway
    peak_per_molar=_solvent_ppm(1.454, 106.05), molar_mass=106.05, density=1.454, preference=0.3)

VC = Component(
    "VC", "additive",
    free=(P(1830, 1.0, 15), P(1800, 0.3, 15),          # nu(C=O) ~1830 (vs) + ~1800 satellite
          P(1555, 0.15, 12),                           # nu(C=C) 1550-1560 (w-m)
          P(1155, 0.6, 20), P(1075, 0.4, 20),          # ring C-O (s)
          P(950, 0.1, 12), P(880, 0.1, 12), P(720, 0.1, 10)),
    bound={0: (1810, 22)},   # assumption: ~20 cm^-1 red shift like the other carbonates
    peak_per_molar=_solvent_ppm(1.355, 86.05), molar_mass=86.05, density=1.355, preference=1.0)

# ---------------------------------------------------------------------------------------------
# Linear carbonates (O-C-O = 1.0, C=O ~0.85, CH3 deformations 0.1-0.2, O-CH3/O-C2H5 0.2-0.4)
# ---------------------------------------------------------------------------------------------
DMC = Component(
    "DMC", "solvent",
    free=(P(1752, 0.85, 18),                           # nu(C=O) 1750-1755 -> 1720-1725
          P(1270, 1.0, 40),                            # nu_as(O-C-O) 1265-1280 (vvs, FWHM 35-45) -> 1300-1320
          P(1455, 0.15, 12), P(1440, 0.12, 12),        # delta(CH3)
          P(1195, 0.08, 15), P(975, 0.15, 12),         # (w), (m)
          P(914, 0.3, 12),                             # nu(O-CH3) 913-915 -> 930-935
          P(792, 0.25, 10),                            # delta(O-C-O) 790-795
          P(2960, 0.1, 15), P(2860, 0.05, 15)),        # nu(CH3) (m), (w)
    bound={0: (1722, 24), 1: (1310, 40), 6: (933, 12)},
    peak_per_molar=_solvent_ppm(1.07, 90.08), molar_mass=90.08, density=1.07, preference=1.0)

EMC = Component(
    "EMC", "solvent",
    free=(P(1745, 0.85, 18), P(1262, 1.0, 42),         # C=O 1745 -> 1715-1720; O-C-O 1260-1265 -> ~1300
          P(1450, 0.15, 12), P(1375, 0.15, 12),
          P(1015, 0.35, 18),                           # O-C2H5 1010-1020 (s)
          P(1095, 0.15, 15), P(790, 0.2, 10),
          P(2985, 0.07, 15), P(2940, 0.05, 15), P(2910, 0.04, 15)),  # nu(CH)
    bound={0: (1717, 24), 1: (1300, 42)},
    peak_per_molar=_solvent_ppm(1.01, 104.10), molar_mass=104.10, density=1.01, preference=1.0)

DEC = Component(
    "DEC", "solvent",
    free=(P(1743, 0.85, 18), P(1258, 1.0, 42),         # C=O 1742-1745 -> ~1715; O-C-O 1255-1260 -> ~1300
          P(1470, 0.1, 12), P(1450, 0.12, 12), P(1370, 0.15, 12),
          P(1025, 0.35, 18), P(1005, 0.2, 14),         # ~1025 (s), ~1005
          P(860, 0.05, 12), P(790, 0.2, 10),
          P(2985, 0.08, 15), P(2940, 0.05, 15), P(2910, 0.04, 15)),  # nu(CH)
    bound={0: (1715, 24), 1: (1300, 42)},
    peak_per_molar=_solvent_ppm(0.975, 118.13), molar_mass=118.13, density=0.975, preference=0.7)

# ---------------------------------------------------------------------------------------------
# Ethers
# ---------------------------------------------------------------------------------------------
DME = Component(
    "DME", "solvent",
    free=(P(1110, 1.0, 40), P(1130, 0.4, 20), P(1085, 0.4, 20),  # nu_as(C-O-C) (vvs, broad, shoulders)
          P(1200, 0.2, 20), P(1460, 0.15, 14), P(1370, 0.05, 12),
          P(850, 0.3, 14),                             # CH2 rock + C-O, 850 -> 870 chelated
          P(2820, 0.1, 15), P(2880, 0.1, 15), P(2930, 0.12, 15), P(2985, 0.06, 15)),  # nu(CH); 2820 OCH3
    bound={0: (1080, 40), 2: (1060, 20), 6: (870, 14)},  # bound C-O-C at ~1080/1060
    peak_per_molar=_solvent_ppm(0.867, 90.12), molar_mass=90.12, density=0.867,
    preference=2.0, sites=2.0)  # glymes chelate: one DME ~ 2 coordination sites

DOL = Component(
    "DOL", "solvent",
    free=(P(1150, 1.0, 25), P(1085, 0.9, 25),          # ring nu(C-O) (vs)
          P(1030, 0.6, 20),                            # (s)
          P(940, 0.45, 15), P(915, 0.2, 12),           # ring breathing (m-s), 915
          P(2860, 0.08, 15), P(2890, 0.08, 15), P(2950, 0.06, 15)),  # nu(CH2)
    bound={0: (1153, 25), 1: (1088, 25), 3: (943, 15)},  # assumption: weak binding, small (+3) shifts
    peak_per_molar=_solvent_ppm(1.06, 74.08), molar_mass=74.08, density=1.06, preference=0.8)

# ---------------------------------------------------------------------------------------------
# Salts: "bound" = contact ion pair / aggregate; preference = pairing constant kappa (1/M):
# paired fraction = 1 - 1/(1 + kappa c)  (assumption: a simple mass-action form)
# ---------------------------------------------------------------------------------------------
LiPF6 = Component(
    "LiPF6", "salt",
    free=(P(840, 1.0, 40, 0.5),),                      # nu3(P-F) ~840 (vs), FWHM 30-50
    bound={0: (846, 44)},
    bound_extra=(P(870, 0.3, 30, 0.5),                 # CIP/AGG shoulder 860-880
                 P(741, 0.05, 10)),                    # nu1 becomes weakly IR-active on pairing
    peak_per_molar=0.35, molar_mass=151.9, preference=0.15)  # Rel. ~0.5-0.8 vs the solvent bands at 1 M

LiTFSI = Component(
    "LiTFSI", "salt",
    free=(P(1350, 0.8, 25), P(1330, 0.3, 20),          # nu_as(SO2) (vs, shoulder 1330)
          P(1195, 1.0, 30),                            # nu_s(CF3) 1190-1200 (vvs)
          P(1137, 0.6, 22),                            # nu_s(SO2) 1135-1140
          P(1057, 0.5, 22),                            # nu_as(S-N-S) 1055-1060
          P(790, 0.1, 10), P(740, 0.05, 10)),          # nu(C-S) (w), expansion (vw)
    bound={0: (1360, 25), 4: (1063, 22), 6: (746, 10)},  # 1350 -> 1360, 1055 -> 1060-1065, 740 -> 745-748
    peak_per_molar=0.7, molar_mass=287.1, preference=0.2)

LiFSI = Component(
    "LiFSI", "salt",
    free=(P(1375, 1.0, 30),                            # nu_as(SO2) 1370 free
          P(1180, 0.5, 25), P(1220, 0.5, 25),          # nu_s(SO2) 1180-1220 (vs, split)
          P(1100, 0.5, 25),                            # nu_as(S-N-S)
          P(840, 0.6, 30),                             # nu(S-F) 830-850
          P(720, 0.05, 12)),                           # delta(S-N-S) 720 free
    bound={0: (1390, 30), 5: (740, 14)},               # CIP/AGG 1385-1395; S-N-S 730-750
    peak_per_molar=0.6, molar_mass=187.1, preference=0.8)

LiBF4 = Component(
    "LiBF4", "salt",
    free=(P(1045, 1.0, 80, 0.5),),                     # nu3(B-F) 1030-1060 (vvs, broad), FWHM 60-100
    bound={0: (1048, 60)},
    bound_extra=(P(1020, 0.4, 50, 0.5), P(1090, 0.3, 50, 0.5),  # split ~1020/1050/1080-1100 on pairing
                 P(766, 0.05, 10)),                    # nu1 IR-activated by pairing
    peak_per_molar=0.5, molar_mass=93.7, preference=0.3)

LiClO4 = Component(
    "LiClO4", "salt",
    free=(P(1095, 1.0, 70, 0.5),),                     # nu3(Cl-O) 1090-1100 (vvs, broad), FWHM 60-80
    bound={0: (1100, 70)},
    bound_extra=(P(940, 0.05, 10),),                   # nu1 weak IR in CIP ~940
    peak_per_molar=0.6, molar_mass=106.4, preference=0.3)

LiNO3 = Component(
    "LiNO3", "salt",
    free=(P(1360, 1.0, 60, 0.5), P(830, 0.1, 10)),    # nu3 NO3- 1300-1420, nu2 ~830
    bound={0: (1300, 40)},
    bound_extra=(P(1420, 0.6, 40, 0.5),),              # nu3 split in CIP
    peak_per_molar=0.5, molar_mass=68.9, preference=0.5)

COMPONENTS: dict[str, Component] = {c.name: c for c in (
    EC, PC, DMC, EMC, DEC, FEC, VC, DME, DOL, LiPF6, LiTFSI, LiFSI, LiBF4, LiClO4, LiNO3)}
COMPONENT_NAMES = list(COMPONENTS)
SOLVENT_NAMES = [n for n, c in COMPONENTS.items() if c.kind != "salt"]
SALT_NAMES = [n for n, c in COMPONENTS.items() if c.kind == "salt"]


def neat_molar(name: str) -> float:
    c = COMPONENTS[name]
    return 1000.0 * c.density / c.molar_mass


# ---------------------------------------------------------------------------------------------
# SEI species (film term) and soluble products (electrolyte term)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Species:
    name: str
    peaks: tuple                    # tuple[Peak, ...]
    peak_per_molar: float           # AU of the strongest band per mol/L (film or solution)
    soluble: bool = False           # soluble products live in the electrolyte stream and can leave
    film_nm_per_molar: float = 300.0  # film thickness per mol/L of product in the probed volume (assumption)
    drift: float = 0.0              # band drift (cm^-1) as the film ages (1-10 cm^-1)
    broaden: float = 0.2            # relative FWHM growth as the film ages (10-30 %)


S = Species
SEI_SPECIES: dict[str, Species] = {s.name: s for s in (
    # Li2CO3: nu3 doublet 1420-1440 / 1490-1510 (vs, 50-100), nu2 860-870 (sharp 10-15), nu4 712/740 (w)
    # (the two nu3 components overlap and pull each other's maxima ~3 cm^-1 inwards: placed at
    #  1426/1504 so the observed doublet sits at ~1430/1500)
    S("Li2CO3", (P(1426, 1.0, 70, 0.4), P(1504, 0.9, 70, 0.4), P(866, 0.5, 12, 0.4),
                 P(712, 0.1, 12, 0.4), P(740, 0.1, 12, 0.4), P(1090, 0.05, 20, 0.4)),
      0.05, drift=3.0),
    # LEDC: 1640-1660 (vs), 1400-1410 (s), 1310-1320 (s), 1080-1100 (m-s), 820-830 (m); 30-60
    S("LEDC", (P(1650, 1.0, 45, 0.4), P(1405, 0.6, 40, 0.4), P(1315, 0.6, 35, 0.4),
               P(1090, 0.45, 40, 0.4), P(825, 0.3, 25, 0.4),
               P(2935, 0.08, 40, 0.4)), 0.06, drift=-5.0),     # nu(CH2) 2900-2970 (w)
    # LMC: 1660-1670 (vs), 1450-1470, ~1380, 1090-1100 (s), ~830 (m); 30-50
    S("LMC", (P(1665, 1.0, 40, 0.4), P(1460, 0.3, 30, 0.4), P(1380, 0.3, 30, 0.4),
              P(1095, 0.5, 35, 0.4), P(830, 0.3, 20, 0.4),
              P(2830, 0.05, 30, 0.4), P(2950, 0.08, 30, 0.4)), 0.06, drift=-4.0),  # nu(CH3)
    # LEC: ~1650-1660, ~1400, ~1320, ~1080, ~830
    S("LEC", (P(1655, 1.0, 40, 0.4), P(1400, 0.6, 35, 0.4), P(1320, 0.55, 35, 0.4),
              P(1080, 0.45, 35, 0.4), P(830, 0.3, 20, 0.4)), 0.06, drift=-4.0),
    # LPDC: like LEDC + CH3 ~1380
    S("LPDC", (P(1650, 1.0, 50, 0.4), P(1400, 0.6, 40, 0.4), P(1380, 0.3, 25, 0.4),
               P(1320, 0.55, 35, 0.4), P(1100, 0.45, 40, 0.4), P(825, 0.3, 25, 0.4)), 0.06, drift=-5.0),
    # ROLi: nu(C-O) 1050-1100 (s), no C=O
    S("ROLi", (P(1075, 1.0, 45, 0.4), P(2850, 0.1, 60, 0.4)), 0.03),   # + nu(CH) 2780-2950
    # poly(VC): C=O 1800-1820 (s, broad), C-O-C 1150-1250 (broad), 1070-1080, oligocarbonate 1740-1750/1250-1270
    S("polyVC", (P(1810, 1.0, 60, 0.4), P(1200, 0.8, 70, 0.4), P(1075, 0.4, 40, 0.4),
                 P(1745, 0.25, 50, 0.4), P(1260, 0.25, 50, 0.4)), 0.05, drift=-6.0),
    # LixPOyFz: nu(P-F) 840-900, nu(P=O) 1250-1310, nu(P-O) 1000-1150 (broad 40-100)
    S("LixPOyFz", (P(870, 1.0, 60, 0.4), P(1280, 0.6, 50, 0.4), P(1080, 0.5, 80, 0.4)), 0.04),
    # FSI-derived S-O species ~1000-1200; positions assumption inside that range
    S("SOx", (P(1100, 1.0, 80, 0.4), P(1040, 0.6, 60, 0.4)), 0.04),
    # borates from BF4- (borate/LiF): assumption, B-O ~1350 broad
    S("borate", (P(1350, 1.0, 90, 0.4), P(1020, 0.4, 60, 0.4)), 0.03),
    # poly-DOL: broad nu(C-O-C) 1100-1130
    S("polyDOL", (P(1115, 1.0, 60, 0.4), P(1450, 0.1, 30, 0.4)), 0.05),
    # soluble dimers (DMDOHC/DEDOHC): nu(C=O) 1745-1755, nu_as(O-C-O) 1260-1280, FWHM 20-30
    S("DMDOHC", (P(1750, 0.8, 25), P(1270, 1.0, 25)), 0.08, soluble=True),
    S("DEDOHC", (P(1745, 0.8, 25), P(1265, 1.0, 25)), 0.08, soluble=True),
)}
# invisible products (LiF, Li2O, LiH, Li2S, Li3N, LixNOy, LiCl, gases) are bookkept but have no bands
INVISIBLE = ("LiF", "gas", "LixNOy", "Li2S", "LiCl")
FILM_SPECIES = [n for n, s in SEI_SPECIES.items() if not s.soluble]
SOLUBLE_SPECIES = [n for n, s in SEI_SPECIES.items() if s.soluble]


# ---------------------------------------------------------------------------------------------
# onsets, stoichiometry, kinetics: reaction families
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reaction:
    """One reaction family k. Per unit extent xi_k (mol/L of probed volume):
    consumes nu_i (components), produces y_p (species), takes z electrons."""
    name: str
    consumes: dict                 # component -> nu
    produces: dict                 # species -> y (invisible species included for bookkeeping)
    electrons: float
    onset: float                   # V vs Li/Li+
    width: float                   # V, logistic width (20-80 mV)
    rate: float                    # M/h nominal rate constant (randomised per sample, assumption)
    passivating: bool = True
    km: float = 0.3                # M, saturation constant in the reactant (additives deplete first-order)


R = Reaction
REACTIONS: dict[str, Reaction] = {r.name: r for r in (
    # VC ~1.0-1.4 V, strongly passivating; n VC + e- -> poly(VC); VC + 2e- -> Li2CO3 + C2H2
    R("VC_reduction", {"VC": 1.0}, {"polyVC": 0.8, "Li2CO3": 0.2, "gas": 0.2}, 0.8 * 0.1 + 0.2 * 2.0,
      1.30, 0.05, 1.5, km=0.05),
    # FEC ~1.0-1.3 V: FEC + 2e- + 2Li+ -> LiF + poly(VC)-like (+ CO2, Li2CO3)
    R("FEC_reduction", {"FEC": 1.0}, {"LiF": 1.0, "polyVC": 0.7, "Li2CO3": 0.3, "gas": 0.3}, 2.0,
      1.15, 0.05, 1.2, km=0.1),
    # EC ~0.8 V: 2 EC + 2e- -> LEDC + C2H4 (per LEDC)
    R("EC_to_LEDC", {"EC": 2.0}, {"LEDC": 1.0, "gas": 1.0}, 2.0, 0.80, 0.05, 0.3),
    # EC + 2e- -> Li2CO3 + C2H4: lower potentials, fresh Li
    R("EC_to_Li2CO3", {"EC": 1.0}, {"Li2CO3": 1.0, "gas": 1.0}, 2.0, 0.45, 0.06, 0.06),
    # PC on graphite 0.8-1.0 V: 2 PC + 2e- -> LPDC + propylene; NOT passivating on graphite
    R("PC_to_LPDC", {"PC": 2.0}, {"LPDC": 1.0, "gas": 1.0}, 2.0, 0.88, 0.05, 0.12),
    # DMC/EMC/DEC 0.5-1.0 V, strongest near 0 V: R-carbonate + e- -> LRC (+ ROLi)
    R("DMC_reduction", {"DMC": 1.0}, {"LMC": 0.7, "ROLi": 0.3, "gas": 1.0}, 1.0, 0.70, 0.10, 0.08),
    R("EMC_reduction", {"EMC": 1.0}, {"LMC": 0.35, "LEC": 0.35, "ROLi": 0.3, "gas": 1.0}, 1.0,
      0.70, 0.10, 0.08),
    R("DEC_reduction", {"DEC": 1.0}, {"LEC": 0.7, "ROLi": 0.3, "gas": 1.0}, 1.0, 0.70, 0.10, 0.08),
    # 2 DMC / 2 DEC -> DMDOHC / DEDOHC (soluble), radical/alkoxide routes; DEC -> DEDOHC on SiOx
    R("DMC_dimerisation", {"DMC": 2.0}, {"DMDOHC": 1.0}, 1.0, 0.90, 0.10, 0.01, passivating=False),
    R("DEC_dimerisation", {"DEC": 2.0}, {"DEDOHC": 1.0}, 1.0, 1.10, 0.10, 0.01, passivating=False),
    # EMC <=> DMC + DEC, alkoxide-catalysed transesterification (no electrons)
    R("EMC_transesterification", {"EMC": 2.0}, {"DMC": 1.0, "DEC": 1.0}, 0.0, 9.9, 1.0, 6.0,
      passivating=False),
    # LiPF6: traces from ~2 V (HF/PF5), electrochemical at low V -> LiF + LixPOyFz
    R("PF6_decomposition", {"LiPF6": 1.0}, {"LiF": 2.0, "LixPOyFz": 0.3}, 1.0, 1.9, 0.30, 0.0003),
    # FSI- ~1.0-1.5 V -> LiF + S-O species (anion-derived, thin)
    R("FSI_reduction", {"LiFSI": 1.0}, {"LiF": 1.0, "SOx": 1.0, "Li2S": 0.2}, 2.0, 1.30, 0.06, 0.12),
    # TFSI- below ~1 V -> LiF, Li2S, Li3N (invisible)
    R("TFSI_reduction", {"LiTFSI": 1.0}, {"LiF": 1.0, "Li2S": 0.5}, 2.0, 0.90, 0.06, 0.03),
    # BF4- -> LiF + borates
    R("BF4_reduction", {"LiBF4": 1.0}, {"LiF": 2.0, "borate": 0.5}, 2.0, 1.00, 0.08, 0.03),
    # ClO4- -> LiCl, Li2O (invisible)  (assumption: onset ~1 V like the other anions)
    R("ClO4_reduction", {"LiClO4": 1.0}, {"LiCl": 1.0}, 8.0, 1.00, 0.08, 0.01),
    # LiNO3 ~1.6-1.8 V -> LixNOy, Li3N (loss of the NO3- band), self-limiting
    R("NO3_reduction", {"LiNO3": 1.0}, {"LixNOy": 1.0}, 2.0, 1.70, 0.05, 0.6, km=0.05),
    # DOL ring-opening polymerisation (anion/Lewis-acid initiated) -> poly-DOL
    R("DOL_polymerisation", {"DOL": 1.0}, {"polyDOL": 1.0}, 0.1, 1.50, 0.15, 0.05),
)}
REACTION_NAMES = list(REACTIONS)

# Electrode modifiers: (onset shift V, rate factor, passivating?) per (reaction, electrode)
#  - PC on graphite: not passivating (handled by the exfoliation switch in the simulator)
#  - LTO: no EC reduction expected at 1.55 V, yet slow continued carbonate formation (Leau 2025):
#    modelled as EC pathways with +1.0/+1.4 V onset, 0.02x/0.1x rate, not passivating.
#  - fresh Li (Cu plating, Li metal): Li2CO3 dominant (MIT thesis), alkyl carbonates stronger.
#  - Si: DEC -> DEDOHC on native SiOx (Shi et al.), strong.
ELECTRODE_MODIFIERS = {
    ("EC_to_LEDC", "LTO"): (1.0, 0.02, False),
    ("EC_to_Li2CO3", "LTO"): (1.4, 0.1, False),
    ("EC_to_Li2CO3", "Cu"): (0.0, 3.0, True),
    ("EC_to_Li2CO3", "Li"): (0.0, 4.0, True),
    ("DMC_reduction", "Li"): (0.0, 2.0, True),
    ("EMC_reduction", "Li"): (0.0, 2.0, True),
    ("DEC_dimerisation", "Si"): (0.0, 4.0, False),
}

ELECTRODES = ["graphite", "Cu", "LTO", "Si", "Li"]

# ---------------------------------------------------------------------------------------------
# Marker windows (cm^-1)
# ---------------------------------------------------------------------------------------------
MARKER_WINDOWS = {
    "ring_bend_700_760": [700.0, 760.0],
    "anion_ring_760_900": [760.0, 900.0],
    "CO_ring_900_1200": [900.0, 1200.0],
    "OCO_carbonate_1200_1550": [1200.0, 1550.0],
    "carbonyl_1550_1900": [1550.0, 1900.0],
    "CH_stretch_2800_3100": [2800.0, 3100.0],
    # narrower markers inside those regions
    "EC_ring_bend_710_735": [705.0, 740.0],
    "PF6_820_880": [820.0, 880.0],
    "DMC_OCO_1250_1330": [1245.0, 1330.0],
    "semicarbonate_1620_1680": [1620.0, 1680.0],
    "linear_CO_1700_1765": [1700.0, 1765.0],
    "EC_CO_1755_1815": [1755.0, 1815.0],
    "FEC_VC_CO_1815_1845": [1815.0, 1845.0],
}


# ---------------------------------------------------------------------------------------------
# The ten systems (docs/opirsim.md, "The ten systems")
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class System:
    number: int                     # docs/opirsim.md numbering (1..10)
    name: str
    electrolyte: str
    electrodes: tuple               # (electrode, probability) choices
    solvents: dict                  # solvent -> nominal weight fraction (w/w) or volume fraction
    by_volume: bool                 # True: solvent ratios are v/v
    salts: tuple                    # (salt, probability) choices for the main salt
    salt_molar: tuple               # (lo, hi) M
    additives: dict = field(default_factory=dict)  # fixed additive -> (lo, hi) wt% of the solvent
    random_additives: bool = True   # carbonate systems: VC/FEC at random small fractions
    solvation_number: tuple = (3.0, 5.0)  # n_s range (literature: 2-6)
    extra_salts: dict = field(default_factory=dict)  # e.g. LiNO3 -> (lo, hi) M


SYSTEMS: list[System] = [
    System(1, "LP30|graphite", "1 M LiPF6 EC:DMC 1:1 w/w", (("graphite", 1.0),),
           {"EC": 0.5, "DMC": 0.5}, False, (("LiPF6", 1.0),), (0.8, 1.2)),
    System(2, "LP30|Cu", "1 M LiPF6 EC:DMC 1:1 w/w", (("Cu", 1.0),),
           {"EC": 0.5, "DMC": 0.5}, False, (("LiPF6", 1.0),), (0.8, 1.2)),
    System(3, "LP30|LTO", "1 M LiPF6 EC:DMC 1:1 w/w", (("LTO", 1.0),),
           {"EC": 0.5, "DMC": 0.5}, False, (("LiPF6", 1.0),), (0.8, 1.2)),
    System(4, "LP57|graphite/Li", "1 M LiPF6 EC:EMC 3:7 w/w", (("graphite", 0.7), ("Li", 0.3)),
           {"EC": 0.3, "EMC": 0.7}, False, (("LiPF6", 1.0),), (0.8, 1.2)),
    System(5, "EC:DEC+FEC|Si", "1 M LiPF6 EC:DEC + 10 wt% FEC", (("Si", 1.0),),
           {"EC": 0.5, "DEC": 0.5}, False, (("LiPF6", 1.0),), (0.8, 1.2),
           additives={"FEC": (6.0, 14.0)}),
    System(6, "LP30+VC|graphite", "1 M LiPF6 EC:DMC 1:1 w/w + 2 wt% VC", (("graphite", 1.0),),
           {"EC": 0.5, "DMC": 0.5}, False, (("LiPF6", 1.0),), (0.8, 1.2),
           additives={"VC": (1.0, 3.0)}),
    System(7, "PC|graphite", "1 M LiPF6 PC", (("graphite", 1.0),),
           {"PC": 1.0}, False, (("LiPF6", 1.0),), (0.8, 1.2)),
    System(8, "LiTFSI DOL:DME+LiNO3|Li", "1 M LiTFSI DOL:DME 1:1 v/v + 1-2 % LiNO3", (("Li", 1.0),),
           {"DOL": 0.5, "DME": 0.5}, True, (("LiTFSI", 1.0),), (0.8, 1.2), random_additives=False,
           extra_salts={"LiNO3": (0.1, 0.3)}),   # 1-2 wt% LiNO3 ~ 0.15-0.3 M
    System(9, "HC-LiFSI DME|Cu/Li", "4 M LiFSI DME", (("Cu", 0.6), ("Li", 0.4)),
           {"DME": 1.0}, False, (("LiFSI", 1.0),), (3.0, 4.5), random_additives=False,
           solvation_number=(2.5, 3.5)),
    System(10, "LiBF4/LiClO4 EC:DEC|graphite", "1 M LiBF4 (or LiClO4) EC:DEC 1:1 w/w",
           (("graphite", 1.0),), {"EC": 0.5, "DEC": 0.5}, False,
           (("LiBF4", 0.6), ("LiClO4", 0.4)), (0.8, 1.2)),
]

SALT_MOLAR_VOLUME = 0.03  # L/mol: volume taken by dissolved salt (assumption; gives LP30 ~6.5 M EC)


def system_table() -> list[dict]:
    """The manifest's ``systems`` list: index (position), number, name, electrolyte, electrode."""
    return [{"index": i, "number": s.number, "name": s.name, "electrolyte": s.electrolyte,
             "electrode": "/".join(e for e, _ in s.electrodes)} for i, s in enumerate(SYSTEMS)]


def stoichiometry_table(sei_area: Optional[dict] = None) -> list[dict]:
    """The manifest's per-reaction stoichiometry, in ``manifest["reactions"]`` order."""
    out = []
    for r in REACTIONS.values():
        d = {"name": r.name, "consumes": dict(r.consumes), "produces": dict(r.produces),
             "electrons": r.electrons, "onset_V": r.onset, "width_V": r.width,
             "passivating": r.passivating}
        if sei_area is not None:
            d["sei_area_per_extent"] = float(sei_area[r.name])
        out.append(d)
    return out
