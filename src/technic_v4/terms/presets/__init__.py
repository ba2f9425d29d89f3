"""Preset screens shipped as plain text: one ``<id>.screen`` file each, a comment header
(``# name:``, ``# description:``, ``# source:``) and then the expression in the screen language."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from technic_v4.errors import ConfigError

_HEADER = ("name", "description", "source")


@dataclass(frozen=True)
class Preset:
    id: str
    name: str
    description: str
    source: str
    expression: str  # the text after the header (inline comments kept; the parser skips them)


def _read(pid: str, text: str) -> Preset:
    meta: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        key, _, value = lines[i].lstrip("# ").partition(":")
        if key.strip() in _HEADER:
            meta[key.strip()] = value.strip()
        i += 1
    missing = [h for h in _HEADER if h not in meta]
    if missing:
        raise ConfigError("preset", f"preset file {pid}.screen lacks its header line(s) "
                          f"{', '.join('# ' + m + ':' for m in missing)}")
    return Preset(pid, meta["name"], meta["description"], meta["source"],
                  "\n".join(lines[i:]).strip())


@cache
def presets() -> dict[str, Preset]:
    """Every shipped preset by id (the file name without ``.screen``), in id order."""
    root = resources.files(__package__)
    found = sorted((f.name[: -len(".screen")], f.read_text(encoding="utf-8"))
                   for f in root.iterdir() if f.name.endswith(".screen"))
    return {pid: _read(pid, text) for pid, text in found}


def preset(pid: str) -> Preset:
    """One preset by id; a ConfigError naming the closest ids if there is none."""
    all_ = presets()
    key = pid.strip().lower()
    if key in all_:
        return all_[key]
    close = difflib.get_close_matches(key, list(all_), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError("preset", f"unknown preset {pid!r}; {hint}choose one of {', '.join(all_)}")
