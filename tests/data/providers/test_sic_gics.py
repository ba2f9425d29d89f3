"""The SIC -> GICS table: valid GICS names only, every sector reachable, narrowest range wins."""

from __future__ import annotations

import pytest

from technic_v4.data.providers import sic_gics
from technic_v4.universe import gics


def test_every_rule_names_a_gics_industry_of_its_sector() -> None:
    for lo, hi, sector, industry in sic_gics.RULES:
        assert 0 <= lo <= hi < 10_000
        assert industry in gics.SECTOR_INDUSTRIES[sector], (lo, hi)


def test_equal_ranges_never_disagree() -> None:
    seen: dict[tuple[int, int], tuple[str, str]] = {}
    for lo, hi, sector, industry in sic_gics.RULES:
        assert seen.setdefault((lo, hi), (sector, industry)) == (sector, industry), (lo, hi)


def test_every_sector_is_reachable_and_round_trips() -> None:
    reach = sic_gics.reachable_industries()
    assert all(reach[s] for s in gics.SECTORS)
    for sector in gics.SECTORS:
        code = sic_gics.representative_sic(sector)
        assert code is not None and sic_gics.classify(code)[0] == sector
    for sector, industries in reach.items():
        for industry in industries:
            code = sic_gics.representative_sic(sector, industry)
            assert sic_gics.classify(code) == (sector, industry)


def test_most_industries_are_reachable() -> None:
    reach = sic_gics.reachable_industries()
    missing = {(s, i) for s, inds in gics.SECTOR_INDUSTRIES.items() for i in inds
               if i not in reach[s]}
    # SIC has one code for all REITs and none for health care technology.
    assert missing == {
        ("Health Care", "Health Care Technology"),
        ("Financials", "Mortgage Real Estate Investment Trusts (REITs)"),
        ("Real Estate", "Industrial REITs"), ("Real Estate", "Office REITs"),
        ("Real Estate", "Residential REITs"), ("Real Estate", "Retail REITs"),
        ("Real Estate", "Specialized REITs"),
    }


@pytest.mark.parametrize(("sic", "name", "want"), [
    ("3571", None, ("Information Technology", "Technology Hardware, Storage & Peripherals")),
    (3674, None, ("Information Technology", "Semiconductors & Semiconductor Equipment")),
    ("7372", None, ("Information Technology", "Software")),
    ("7370", None, ("Communication Services", "Interactive Media & Services")),
    ("2834", None, ("Health Care", "Pharmaceuticals")),
    ("2836", None, ("Health Care", "Biotechnology")),
    ("1311", None, ("Energy", "Oil, Gas & Consumable Fuels")),
    ("1381", None, ("Energy", "Energy Equipment & Services")),
    ("6021", None, ("Financials", "Banks")),
    ("6770", None, ("Financials", "Financial Services")),
    ("4911", None, ("Utilities", "Electric Utilities")),
    ("5961", None, ("Consumer Discretionary", "Broadline Retail")),
    ("5331", None, ("Consumer Staples", "Consumer Staples Distribution & Retail")),
    ("2080", None, ("Consumer Staples", "Beverages")),
    ("3711", None, ("Consumer Discretionary", "Automobiles")),
    ("1000", None, ("Materials", "Metals & Mining")),
    ("4512", None, ("Industrials", "Passenger Airlines")),
    ("6798", None, ("Real Estate", "Diversified REITs")),
    ("6798", "Prime Office Trust", ("Real Estate", "Office REITs")),
    ("6798", "Arbor Mortgage Investors", ("Financials",
                                          "Mortgage Real Estate Investment Trusts (REITs)")),
    ("6798", "Public Storage", ("Real Estate", "Specialized REITs")),
    ("9995", None, (None, None)),
    ("0000", None, (None, None)),
    (None, None, (None, None)),
    ("abc", None, (None, None)),
    ("12345", None, (None, None)),
    (True, None, (None, None)),
])
def test_known_codes(sic: object, name: str | None, want: tuple[str | None, str | None]) -> None:
    assert sic_gics.classify(sic, name) == want
