"""Indicators: pure array kernels (``kernels``) and the panel-facing layer (``compute``)."""
