"""evalkit: automatic screening (BLEU, chrF, ROUGE, choice accuracy, EM) and expert review."""
from __future__ import annotations

try:
    from importlib.metadata import version as _version
    __version__ = _version("sftkit")
except Exception:   # running from a source tree that was never installed
    __version__ = "0+unknown"
