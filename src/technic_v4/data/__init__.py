"""Data layer: providers -> validation -> local store (L2) -> panels, with an L1 memory cache."""
