"""Constants shared by the provider tests and their fixtures."""

from __future__ import annotations

import datetime as dt

KEY = "pk-test-4f9a27c1d3e8b6f0"  # never appears in any message, log line or repr
P_EPOCH = dt.date(2026, 10, 5)  # 34 sessions to testing.END (2026-11-20)
N_LISTINGS = 60
