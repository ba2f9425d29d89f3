"""Data providers. Vendors implement raw calls only; validation happens once above them."""
