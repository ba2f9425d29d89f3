"""Give freed heap memory back to the operating system between the big phases of a job.

glibc keeps memory that numpy frees inside its heaps when the arrays were allocated by worker
threads or below its (self-raising) mmap threshold: a 20-year replay that frees gigabytes of
chunk columns kept them all as resident memory (~4 GB of its 8 GB at the end, measured).
``malloc_trim(0)`` returns every free page of every heap; it costs milliseconds. Elsewhere
(another C library, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)


@functools.cache
def _trim_function() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        log.debug("no malloc_trim in %s", name)
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def trim() -> bool:
    """Release the free pages of the C heap; True when the C library did (glibc)."""
    fn = _trim_function()
    if fn is None:
        return False
    fn(0)
    return True
