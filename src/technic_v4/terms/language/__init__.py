"""The screen language: text → syntax tree (:mod:`.parser`) → checked terms (:mod:`.check`)
with canonical keys (:mod:`.keys`); :func:`compile` does all three and is cached by text."""

from technic_v4.terms.language.errors import ScreenError
from technic_v4.terms.language.keys import Term
from technic_v4.terms.language.screen import Clause, Screen, compile

__all__ = ["Clause", "Screen", "ScreenError", "Term", "compile"]
