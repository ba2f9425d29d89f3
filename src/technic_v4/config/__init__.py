"""Typed configuration: environment settings (``settings``)."""
