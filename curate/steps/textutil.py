"""Character classes and small helpers shared by the text steps (normalize, language, fillers,
safety, quality).  One place defines what "CJK" means so the steps agree.

    >>> from curate.steps.textutil import turns, CJK_CHAR
    >>> rec = {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "好"}], "text": None}
    >>> [m["role"] for m in turns(rec, ("user",))]
    ['user']
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

LEXICON_DIR = Path(__file__).parent / "lexicons"

# Han ideographs (BMP blocks and the supplementary planes).
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
KANA = "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f"
HANGUL = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
# CJK text context for punctuation decisions: scripts above plus CJK and full-width punctuation.
CJK_CONTEXT = HAN + KANA + HANGUL + "\u3000-\u303f\uff00-\uffef"
HAN_CHAR = re.compile(f"[{HAN}]")
CJK_CHAR = re.compile(f"[{CJK_CONTEXT}]")


def turns(rec: dict, roles) -> list[dict]:
    """The messages of ``rec`` whose role is in ``roles`` (the dicts themselves, to edit in place)."""
    return [m for m in rec.get("messages") or [] if m["role"] in roles]


def has_text_doc(rec: dict) -> bool:
    return not rec.get("messages") and isinstance(rec.get("text"), str)


def numbers(options: dict, *keys: str) -> dict:
    """The options among ``keys`` that are numbers (the loader reports the others' types), so
    a step's ``problems()`` can compare them without crashing on a string."""
    return {k: options[k] for k in keys
            if isinstance(options.get(k), (int, float)) and not isinstance(options.get(k), bool)}


def load_lexicon(name_or_path: str | None, default_name: str) -> dict:
    """A YAML lexicon: ``name_or_path`` is a file path, or None for the one shipped with sftkit."""
    path = Path(name_or_path) if name_or_path else LEXICON_DIR / default_name
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping")
    return data


def lexicon_problem(path: str | None) -> str | None:
    """Why the lexicon file at ``path`` cannot be used, or None."""
    if path is None:
        return None
    if not isinstance(path, str) or not Path(path).is_file():
        return f"lexicon {path!r} is not a file"
    try:
        load_lexicon(path, "")
    except (OSError, yaml.YAMLError, ValueError) as e:
        return f"lexicon {path!r} cannot be read: {e}"
    return None
