"""technic: a self-hosted full-market stock scanner (import package ``technic_v4``).

Pipeline (each stage owned by one package; data flows one way):

    ScanConfig -> universe (reference data, smart filter) -> pre-screen (latest-bar snapshot)
    -> panel (symbols x bars, from the local store) -> indicators (2D kernels, TA-Lib exact)
    -> scoring (regime, sub-scores, TechRating, RSRating, Signal, Rationale) -> plans
    -> ranked DataFrame

``scanner_core`` and ``data_engine`` are the seed's front doors and hold no logic of their own.
"""

import os as _os

__version__ = "0.1.0"

# Compiled kernels are cached on disk by numba (next to the package, or in the user cache when
# the install is read-only). TECHNIC_NUMBA_CACHE_DIR moves that cache; it must be set before
# numba is imported, hence here.
if _os.environ.get("TECHNIC_NUMBA_CACHE_DIR"):
    _os.environ.setdefault("NUMBA_CACHE_DIR", _os.environ["TECHNIC_NUMBA_CACHE_DIR"])
