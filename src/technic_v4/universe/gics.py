"""GICS sector and industry names (the 11 sectors of the Global Industry Classification Standard).

The predecessor filtered on names that are not GICS names and silently lost whole sectors; every
user-supplied sector is checked against :data:`SECTORS` and rejected with the valid list.
"""

from __future__ import annotations

SECTOR_INDUSTRIES: dict[str, tuple[str, ...]] = {
    "Communication Services": (
        "Diversified Telecommunication Services", "Wireless Telecommunication Services",
        "Media", "Entertainment", "Interactive Media & Services",
    ),
    "Consumer Discretionary": (
        "Automobile Components", "Automobiles", "Household Durables", "Leisure Products",
        "Textiles, Apparel & Luxury Goods", "Hotels, Restaurants & Leisure",
        "Diversified Consumer Services", "Broadline Retail", "Specialty Retail",
    ),
    "Consumer Staples": (
        "Consumer Staples Distribution & Retail", "Beverages", "Food Products", "Tobacco",
        "Household Products", "Personal Care Products",
    ),
    "Energy": ("Energy Equipment & Services", "Oil, Gas & Consumable Fuels"),
    "Financials": (
        "Banks", "Financial Services", "Consumer Finance", "Capital Markets",
        "Mortgage Real Estate Investment Trusts (REITs)", "Insurance",
    ),
    "Health Care": (
        "Health Care Equipment & Supplies", "Health Care Providers & Services",
        "Health Care Technology", "Biotechnology", "Pharmaceuticals",
        "Life Sciences Tools & Services",
    ),
    "Industrials": (
        "Aerospace & Defense", "Building Products", "Construction & Engineering",
        "Electrical Equipment", "Machinery", "Commercial Services & Supplies",
        "Professional Services", "Air Freight & Logistics", "Passenger Airlines",
        "Ground Transportation",
    ),
    "Information Technology": (
        "IT Services", "Software", "Communications Equipment",
        "Technology Hardware, Storage & Peripherals", "Electronic Equipment, Instruments & Components",
        "Semiconductors & Semiconductor Equipment",
    ),
    "Materials": ("Chemicals", "Construction Materials", "Containers & Packaging",
                  "Metals & Mining", "Paper & Forest Products"),
    "Real Estate": (
        "Diversified REITs", "Industrial REITs", "Office REITs", "Residential REITs",
        "Retail REITs", "Specialized REITs", "Real Estate Management & Development",
    ),
    "Utilities": ("Electric Utilities", "Gas Utilities", "Multi-Utilities", "Water Utilities",
                  "Independent Power and Renewable Electricity Producers"),
}

SECTORS: tuple[str, ...] = tuple(SECTOR_INDUSTRIES)
INDUSTRIES: tuple[str, ...] = tuple(i for inds in SECTOR_INDUSTRIES.values() for i in inds)

# Listing types as they appear in reference data (column ``Type``).
COMMON_STOCK = "Common Stock"
ADR = "ADR"
ETF = "ETF"
LEVERAGED_ETF = "Leveraged ETF"
INVERSE_ETF = "Inverse ETF"
SPAC = "SPAC"
PREFERRED = "Preferred Stock"
TYPES: tuple[str, ...] = (COMMON_STOCK, ADR, ETF, LEVERAGED_ETF, INVERSE_ETF, SPAC, PREFERRED)
DEFAULT_TYPES: tuple[str, ...] = (COMMON_STOCK, ADR)
