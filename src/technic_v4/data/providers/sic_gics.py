"""SIC codes (the SEC's Standard Industrial Classification) to GICS sectors and industries.

Vendors such as Polygon/Massive describe a company by its 4-digit SIC code; technic filters by
GICS names (:mod:`technic_v4.universe.gics`). This module is the mapping table: ranges of SIC
codes, each to one GICS sector and one of that sector's industries as named in
``gics.SECTOR_INDUSTRIES``. A code in several ranges takes the narrowest one, so the table reads
as "a division, then its exceptions".

SIC and GICS cut the economy differently, so the table is an approximation:

- GICS industries that ``gics.py`` does not name (Marine Transportation, Trading Companies &
  Distributors, Transportation Infrastructure, Distributors, Conglomerates, Construction
  materials dealers ...) map to the nearest named industry of the same sector.
- SIC has one code for every REIT (6798). :func:`classify` refines it by the company name
  (mortgage, office, industrial, residential, retail, specialized keywords); without such a word
  a REIT is a Diversified REIT. Mortgage REITs are a Financials industry in GICS.
- Health Care Technology has no SIC code of its own; no code maps to it.
- Public administration and "nonclassifiable" codes (9100-9999, e.g. 9995 non-operating
  shells) map to no sector (``None``).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

import numpy as np

from technic_v4.universe import gics

_C = "Communication Services"
_D = "Consumer Discretionary"
_S = "Consumer Staples"
_E = "Energy"
_F = "Financials"
_H = "Health Care"
_I = "Industrials"
_T = "Information Technology"
_M = "Materials"
_R = "Real Estate"
_U = "Utilities"

# (first code, last code, sector, industry); the narrowest range containing a code wins.
RULES: tuple[tuple[int, int, str, str], ...] = (
    # Division A: agriculture, forestry, fishing
    (100, 999, _S, "Food Products"),
    (800, 899, _M, "Paper & Forest Products"),
    # Division B: mining
    (1000, 1499, _M, "Metals & Mining"),
    (1200, 1299, _E, "Oil, Gas & Consumable Fuels"),  # coal
    (1300, 1399, _E, "Oil, Gas & Consumable Fuels"),
    (1380, 1389, _E, "Energy Equipment & Services"),  # drilling, oil field services
    (1400, 1499, _M, "Construction Materials"),
    (1470, 1479, _M, "Chemicals"),  # chemical and fertilizer minerals
    # Division C: construction
    (1500, 1799, _I, "Construction & Engineering"),
    (1520, 1531, _D, "Household Durables"),  # home builders
    # Division D: manufacturing
    (2000, 2099, _S, "Food Products"),
    (2080, 2086, _S, "Beverages"),
    (2100, 2199, _S, "Tobacco"),
    (2200, 2399, _D, "Textiles, Apparel & Luxury Goods"),
    (2400, 2499, _M, "Paper & Forest Products"),
    (2430, 2439, _I, "Building Products"),  # millwork, veneer, plywood
    (2450, 2452, _D, "Household Durables"),  # wood buildings, mobile homes
    (2500, 2599, _D, "Household Durables"),
    (2520, 2599, _I, "Commercial Services & Supplies"),  # office and public furniture
    (2600, 2699, _M, "Paper & Forest Products"),
    (2650, 2679, _M, "Containers & Packaging"),
    (2700, 2799, _C, "Media"),  # publishing
    (2750, 2799, _I, "Commercial Services & Supplies"),  # commercial printing
    (2800, 2899, _M, "Chemicals"),
    (2830, 2834, _H, "Pharmaceuticals"),
    (2835, 2836, _H, "Biotechnology"),  # diagnostics, biological products
    (2840, 2843, _S, "Household Products"),
    (2844, 2844, _S, "Personal Care Products"),
    (2900, 2999, _E, "Oil, Gas & Consumable Fuels"),
    (3000, 3099, _M, "Chemicals"),  # rubber and plastics
    (3010, 3011, _D, "Automobile Components"),  # tires
    (3020, 3021, _D, "Textiles, Apparel & Luxury Goods"),  # rubber footwear
    (3080, 3089, _M, "Containers & Packaging"),  # plastics products
    (3100, 3199, _D, "Textiles, Apparel & Luxury Goods"),  # leather
    (3200, 3299, _M, "Construction Materials"),
    (3210, 3211, _I, "Building Products"),  # flat glass
    (3220, 3221, _M, "Containers & Packaging"),  # glass containers
    (3229, 3231, _D, "Household Durables"),  # glassware
    (3300, 3399, _M, "Metals & Mining"),
    (3400, 3499, _I, "Machinery"),
    (3410, 3412, _M, "Containers & Packaging"),  # metal cans
    (3430, 3449, _I, "Building Products"),
    (3480, 3489, _I, "Aerospace & Defense"),  # ordnance
    (3500, 3599, _I, "Machinery"),
    (3570, 3579, _T, "Technology Hardware, Storage & Peripherals"),
    (3576, 3576, _T, "Communications Equipment"),  # computer communications equipment
    (3585, 3585, _I, "Building Products"),  # heating and air-conditioning
    (3600, 3699, _I, "Electrical Equipment"),
    (3630, 3639, _D, "Household Durables"),  # household appliances
    (3651, 3651, _D, "Household Durables"),  # household audio and video
    (3652, 3652, _C, "Entertainment"),  # recorded media
    (3660, 3669, _T, "Communications Equipment"),
    (3670, 3679, _T, "Electronic Equipment, Instruments & Components"),
    (3674, 3674, _T, "Semiconductors & Semiconductor Equipment"),
    (3695, 3695, _T, "Technology Hardware, Storage & Peripherals"),  # magnetic media
    (3700, 3799, _I, "Machinery"),
    (3710, 3711, _D, "Automobiles"),
    (3714, 3714, _D, "Automobile Components"),
    (3720, 3729, _I, "Aerospace & Defense"),
    (3750, 3751, _D, "Automobiles"),  # motorcycles
    (3760, 3769, _I, "Aerospace & Defense"),
    (3790, 3799, _D, "Leisure Products"),  # travel trailers, campers
    (3800, 3899, _T, "Electronic Equipment, Instruments & Components"),
    (3812, 3812, _I, "Aerospace & Defense"),  # search and navigation
    (3826, 3826, _H, "Life Sciences Tools & Services"),  # laboratory analytical instruments
    (3840, 3851, _H, "Health Care Equipment & Supplies"),
    (3860, 3861, _T, "Technology Hardware, Storage & Peripherals"),  # photographic
    (3870, 3873, _D, "Textiles, Apparel & Luxury Goods"),  # watches
    (3900, 3999, _D, "Leisure Products"),
    (3910, 3915, _D, "Textiles, Apparel & Luxury Goods"),  # jewelry
    (3950, 3955, _I, "Commercial Services & Supplies"),  # office supplies
    (3990, 3999, _D, "Household Durables"),  # miscellaneous manufacturing
    # Division E: transportation, communications, utilities
    (4000, 4299, _I, "Ground Transportation"),
    (4400, 4499, _I, "Air Freight & Logistics"),  # water transportation
    (4500, 4599, _I, "Air Freight & Logistics"),
    (4510, 4512, _I, "Passenger Airlines"),
    (4520, 4522, _I, "Passenger Airlines"),
    (4600, 4699, _E, "Oil, Gas & Consumable Fuels"),  # pipelines
    (4700, 4799, _I, "Air Freight & Logistics"),  # freight forwarding, transportation services
    (4700, 4729, _D, "Hotels, Restaurants & Leisure"),  # travel agencies, cruises
    (4800, 4899, _C, "Diversified Telecommunication Services"),
    (4810, 4812, _C, "Wireless Telecommunication Services"),
    (4830, 4841, _C, "Media"),  # broadcasting, cable
    (4900, 4999, _U, "Multi-Utilities"),
    (4910, 4911, _U, "Electric Utilities"),
    (4920, 4925, _U, "Gas Utilities"),
    (4922, 4922, _E, "Oil, Gas & Consumable Fuels"),  # gas transmission pipelines
    (4940, 4941, _U, "Water Utilities"),
    (4950, 4959, _I, "Commercial Services & Supplies"),  # waste management
    (4990, 4991, _U, "Independent Power and Renewable Electricity Producers"),
    # Division F: wholesale trade
    (5000, 5199, _I, "Commercial Services & Supplies"),
    (5030, 5039, _I, "Building Products"),
    (5040, 5049, _T, "Electronic Equipment, Instruments & Components"),
    (5047, 5047, _H, "Health Care Providers & Services"),  # medical distributors
    (5050, 5051, _M, "Metals & Mining"),
    (5060, 5065, _T, "Electronic Equipment, Instruments & Components"),
    (5063, 5064, _I, "Electrical Equipment"),
    (5080, 5085, _I, "Machinery"),
    (5090, 5099, _D, "Leisure Products"),
    (5110, 5113, _M, "Paper & Forest Products"),
    (5120, 5122, _H, "Health Care Providers & Services"),  # drug distributors
    (5130, 5139, _D, "Textiles, Apparel & Luxury Goods"),
    (5140, 5159, _S, "Consumer Staples Distribution & Retail"),
    (5160, 5169, _M, "Chemicals"),
    (5170, 5172, _E, "Oil, Gas & Consumable Fuels"),
    (5180, 5182, _S, "Consumer Staples Distribution & Retail"),
    # Division G: retail trade
    (5200, 5999, _D, "Specialty Retail"),
    (5300, 5399, _D, "Broadline Retail"),
    (5330, 5331, _S, "Consumer Staples Distribution & Retail"),  # variety (dollar) stores
    (5400, 5499, _S, "Consumer Staples Distribution & Retail"),
    (5800, 5899, _D, "Hotels, Restaurants & Leisure"),
    (5910, 5912, _S, "Consumer Staples Distribution & Retail"),  # drug stores
    (5960, 5969, _D, "Broadline Retail"),  # catalog, mail-order, nonstore
    # Division H: finance, insurance, real estate
    (6000, 6099, _F, "Banks"),
    (6090, 6099, _F, "Financial Services"),
    (6100, 6199, _F, "Financial Services"),
    (6140, 6141, _F, "Consumer Finance"),
    (6200, 6299, _F, "Capital Markets"),
    (6300, 6499, _F, "Insurance"),
    (6500, 6599, _R, "Real Estate Management & Development"),
    (6700, 6799, _F, "Financial Services"),
    (6720, 6726, _F, "Capital Markets"),  # investment offices and funds
    (6790, 6792, _E, "Oil, Gas & Consumable Fuels"),  # oil royalty traders
    (6794, 6794, _I, "Commercial Services & Supplies"),  # patent owners and lessors
    (6795, 6795, _M, "Metals & Mining"),  # mineral royalty traders
    (6798, 6798, _R, "Diversified REITs"),
    (6799, 6799, _F, "Capital Markets"),
    # Division I: services
    (7000, 7099, _D, "Hotels, Restaurants & Leisure"),
    (7200, 7299, _D, "Diversified Consumer Services"),
    (7300, 7399, _I, "Commercial Services & Supplies"),
    (7310, 7319, _C, "Media"),  # advertising
    (7320, 7323, _I, "Professional Services"),  # credit reporting
    (7360, 7363, _I, "Professional Services"),  # staffing
    (7370, 7370, _C, "Interactive Media & Services"),  # programming, data processing (internet)
    (7371, 7379, _T, "IT Services"),
    (7372, 7372, _T, "Software"),
    (7500, 7599, _D, "Diversified Consumer Services"),
    (7510, 7515, _I, "Ground Transportation"),  # truck and car rental
    (7600, 7699, _I, "Commercial Services & Supplies"),
    (7800, 7899, _C, "Entertainment"),
    (7900, 7999, _D, "Hotels, Restaurants & Leisure"),
    (7900, 7929, _C, "Entertainment"),
    (8000, 8099, _H, "Health Care Providers & Services"),
    (8100, 8199, _I, "Professional Services"),  # legal
    (8200, 8299, _D, "Diversified Consumer Services"),  # education
    (8300, 8699, _D, "Diversified Consumer Services"),
    (8700, 8799, _I, "Professional Services"),
    (8710, 8713, _I, "Construction & Engineering"),
    (8730, 8734, _H, "Life Sciences Tools & Services"),  # commercial research, testing labs
    (8744, 8744, _I, "Commercial Services & Supplies"),  # facilities support
    (8800, 8999, _I, "Commercial Services & Supplies"),
)

# REIT (SIC 6798) refinement by name: the first matching pattern wins.
_REIT_WORDS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), s, i) for p, s, i in (
        (r"\bmortgage\b", _F, "Mortgage Real Estate Investment Trusts (REITs)"),
        (r"\boffice\b", _R, "Office REITs"),
        (r"\b(industrial|logistics|warehouse)\b", _R, "Industrial REITs"),
        (r"\b(residential|apartment|homes|housing|communities)\b", _R, "Residential REITs"),
        (r"\b(retail|shopping|mall|malls|outlet)\b", _R, "Retail REITs"),
        (r"\b(storage|tower|towers|data cent(er|re)s?|timber|healthcare|health care|hotel|"
         r"lodging|hospitality|gaming|infrastructure|farmland)\b", _R, "Specialized REITs"),
    ))


@lru_cache(maxsize=1)
def _table() -> tuple[np.ndarray, list[tuple[str, str] | None]]:
    """code (0..9999) -> index into the label list (-1 = unmapped)."""
    labels: list[tuple[str, str] | None] = []
    idx = np.full(10_000, -1, dtype=np.int32)
    # Widest first, so that narrower ranges overwrite them.
    for lo, hi, sector, industry in sorted(RULES, key=lambda r: r[0] - r[1]):
        labels.append((sector, industry))
        idx[lo:hi + 1] = len(labels) - 1
    return idx, labels


def _code(sic: object) -> int | None:
    """A SIC code from an int or a string such as ``"3571"``; None when it is not one."""
    if sic is None or isinstance(sic, bool):
        return None
    try:
        code = int(str(sic).strip())
    except ValueError:
        return None
    return code if 0 <= code < 10_000 else None


def classify(sic: object, name: str | None = None) -> tuple[str | None, str | None]:
    """(GICS sector, GICS industry) for a SIC code, or (None, None) when it has no mapping.

    ``name`` (the company name) refines REITs (SIC 6798), which SIC does not subdivide.
    """
    code = _code(sic)
    if code is None:
        return None, None
    idx, labels = _table()
    k = int(idx[code])
    if k < 0:
        return None, None
    label = labels[k]
    assert label is not None
    if code == 6798 and name:
        for pattern, sector, industry in _REIT_WORDS:
            if pattern.search(name):
                return sector, industry
    return label


@cache
def representative_sic(sector: str, industry: str | None = None) -> int | None:
    """The lowest SIC code that :func:`classify` maps to (sector, industry) without a name.

    With ``industry`` None, or an industry no code reaches, the lowest code of the sector.
    Used by test doubles that must describe a GICS-classified listing as a vendor would.
    """
    idx, labels = _table()
    codes = np.arange(10_000)
    mapped = idx >= 0
    if industry is not None:
        want = [k for k, lab in enumerate(labels) if lab == (sector, industry)]
        hit = codes[mapped & np.isin(idx, want)]
        if len(hit):
            return int(hit[0])
    want = [k for k, lab in enumerate(labels) if lab is not None and lab[0] == sector]
    hit = codes[mapped & np.isin(idx, want)]
    return int(hit[0]) if len(hit) else None


def reachable_industries() -> dict[str, tuple[str, ...]]:
    """Every (sector -> industries) pair some SIC code maps to (without name refinement)."""
    idx, labels = _table()
    used = {labels[k] for k in np.unique(idx[idx >= 0]).tolist()}
    return {s: tuple(i for i in inds if (s, i) in used)
            for s, inds in gics.SECTOR_INDUSTRIES.items()}


def _check() -> None:
    for lo, hi, sector, industry in RULES:
        if industry not in gics.SECTOR_INDUSTRIES.get(sector, ()):
            raise AssertionError(f"SIC {lo}-{hi}: {industry!r} is not a GICS industry of "
                                 f"{sector!r}")
        if not 0 <= lo <= hi < 10_000:
            raise AssertionError(f"bad SIC range {lo}-{hi}")
    for _, sector, industry in _REIT_WORDS:
        if industry not in gics.SECTOR_INDUSTRIES[sector]:
            raise AssertionError(f"{industry!r} is not a GICS industry of {sector!r}")


_check()
