"""fillers: remove spoken disfluencies (嗯, 呃, 那个…, 这个这个, um, you know) where they are fillers.

The words and their rules live in an editable lexicon (``lexicons/fillers.yaml``, or your own
file through ``lexicon:``; ``extra:`` adds words to a rule).  Four rules, from loose to strict:

* ``anywhere``: never part of a word (嗯, 呃, um, uh): removed wherever it stands, with the
  pause after it.
* ``clause_start``: ambiguous words (啊, 额, 那个, 就是说, you know, I mean) are removed only at
  the start of a clause *and* followed by a pause (那个，我想问 -> 我想问), or, in English, set
  off by a pause before a clause end (It hurts, you know. -> It hurts.).  So 那个医生说的, 那个药, 额头, 是啊,
  "Do you know the dose?" and "What I mean is" keep their meaning.
* ``repeated``: a stammered repeat collapses to one (这个这个药 -> 这个药).
* ``trim``: followed by a pause, cut to its meaningful part (然后呢， -> 然后，); 然后呢？ stays.

A turn that would be left with no words (a patient answering only "嗯。", i.e. yes) is kept as it
was, and so is Chinese text in quotation marks “…” 「…」 (a poem or a review the task is about).  Fillers belong to speech, so by default only user turns are cleaned (``roles: [user]``);
answers written by doctors or annotators rarely hold any, and there 那个/啊 are nearly always
meant.  ``documents: true`` cleans plain ``text`` documents too (e.g. ASR transcripts).
``self.counts`` holds how often each filler was removed (they show in report.json).

    >>> from curate.steps.fillers import Fillers
    >>> f = Fillers()
    >>> f.clean("嗯，那个，我想问一下，这个这个药那个医生说的是啊，一天吃几次？")
    '我想问一下，这个药那个医生说的是啊，一天吃几次？'
"""
from __future__ import annotations

import re

from ..step import Drop, RecordStep
from .textutil import load_lexicon, lexicon_problem, turns

RULES = ("anywhere", "clause_start", "repeated", "trim", "keep")
_PUNCT = r"，。！？；：、,.!?;:…~～—\-(（\"“”'‘’「」\n"
# A clause starts at the start of the text or after punctuation (and one space): not after a
# plain space, so "what you know— your ..." keeps its "you know".
_BOUNDARY = rf"(?:^|(?<=[{_PUNCT}])|(?<=[{_PUNCT}] ))"
_PAUSE = r"(?:[，,、~～]|…+|\.{2,}|—+|-{2,})"
_END = r"[。！？.!?；;\n]|$"
_WORD_CHAR = re.compile(r"\w")
_TIDY = [(re.compile(r"^[\s，,、。.;；]+"), ""),                 # a pause left at the start
         (re.compile(r"[，,、]\s*(?=[。！？.!?；;]|$)"), ""),     # a pause left before a clause end
         (re.compile(r"([，,、])\s*[，,、]"), r"\1"),             # two pauses in a row
         (re.compile(r"(?<=\S)  +"), " ")]
_SENTENCE_START = re.compile(r"(?:^|(?<=[.!?]\s))([a-z])")
_KEPT = re.compile("[\U000f0000-\U000ffffd]")


def _variants(word: str) -> list[str]:
    """A word as written and capitalised (English only; Chinese has no case)."""
    return [word, word[0].upper() + word[1:]] if word[:1].islower() else [word]


def _alt(words, capitalise: bool = False) -> str:
    forms = {v for w in words for v in (_variants(w) if capitalise else [w])}
    return "|".join(sorted(map(re.escape, forms), key=len, reverse=True))


def compile_rules(lang: str, rules: dict) -> tuple[list, re.Pattern | None, re.Pattern | None]:
    """(rules as (kind, pattern, replacement), a quick "any filler here?" test, kept phrases)."""
    en = lang != "zh"
    wb_l, wb_r = (r"(?<![A-Za-z'])", r"(?![A-Za-z'])") if en else ("", "")
    rules = {k: v for k, v in (rules or {}).items() if v}
    out: list[tuple[str, re.Pattern, str]] = []
    if rules.get("repeated"):
        alt = _alt(rules["repeated"], en)
        out.append(("repeated", re.compile(rf"{wb_l}({alt})(?:\s*[，,]?\s*\1{wb_r})+"), r"\1"))
    if rules.get("anywhere"):
        alt = _alt(rules["anywhere"], en)
        out.append(("anywhere", re.compile(rf"{wb_l}(?:{alt}){wb_r}(?:\s*{_PAUSE}+\s*|\s+)?"), ""))
    if rules.get("clause_start"):
        alt = _alt(rules["clause_start"], en)
        if en:   # set off by commas mid-sentence: "for, you know, three days" -> "for three days"
            keep_comma = "".join(rf"(?<!\b[{w[0].upper()}{w[0]}]{w[1:]})" for w in ("oh", "ah", "so", "no", "yes", "well", "okay"))
            out.append(("clause_start", re.compile(rf"(?<=[a-z]){keep_comma}, (?:{alt}), (?=[a-z])"), " "))
        out.append(("clause_start", re.compile(rf"{_BOUNDARY}(?:{alt}){wb_r}\s*{_PAUSE}+\s*"), ""))
        if en:   # "It hurts, you know." (in Chinese a list ends so: 我要这个，那个。)
            out.append(("clause_start", re.compile(rf"\s*{_PAUSE}\s*(?:{alt}){wb_r}\s*(?={_END})"), ""))
    for word, keep in (rules.get("trim") or {}).items():
        out.append(("trim", re.compile(rf"{wb_l}{re.escape(word)}(?=\s*{_PAUSE})"), keep))
    words = [v for r in ("anywhere", "clause_start", "repeated") for w in rules.get(r, [])
             for v in (_variants(w) if en else [w])] + list(rules.get("trim") or {})
    alt = "|".join(sorted(map(re.escape, set(words)), key=len, reverse=True))
    candidate = re.compile(f"{wb_l}(?:{alt}){wb_r}") if words else None   # whole words: "er" is in "water"
    keep = [_alt(rules["keep"], en)] if rules.get("keep") else []
    if not en:   # quoted words are the subject of the task (a poem, a review): not the user's speech
        keep.append("“[^”\n]*”|「[^」\n]*」")
    kept = re.compile("|".join(keep), re.I if en else 0) if keep else None
    return out, candidate, kept


class Fillers(RecordStep):
    name = "fillers"
    defaults: dict = {
        "roles": ["user"],            # which turns to clean
        "documents": False,           # also clean plain text documents
        "lexicon": None,              # a YAML file like lexicons/fillers.yaml; None: the shipped one
        "extra": {},                  # e.g. {zh: {anywhere: [唔]}, en: {clause_start: [like]}}
    }

    def __init__(self, options=None, ctx=None):
        super().__init__(options, ctx)
        lex = load_lexicon(self.options["lexicon"], "fillers.yaml")
        for lang, rules in (self.options["extra"] or {}).items():
            for rule, words in rules.items():
                base = lex.setdefault(lang, {}).setdefault(rule, {} if rule == "trim" else [])
                base.update(words) if rule == "trim" else base.extend(words)
        self.by_lang = {lang: compile_rules(lang, rules) for lang, rules in lex.items()}

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        out = []
        roles = options.get("roles")
        if not isinstance(roles, list) or not set(roles) <= {"system", "user", "assistant"}:
            out.append(f"roles: expected a list drawn from system, user, assistant; got {roles!r}")
        p = lexicon_problem(options.get("lexicon"))
        if p:
            out.append(p)
        extra = options.get("extra") or {}
        for lang, rules in (extra.items() if isinstance(extra, dict) else []):
            if not isinstance(rules, dict):
                out.append(f"extra.{lang}: expected a mapping of rule to words")
                continue
            for rule, words in rules.items():
                if rule not in RULES:
                    out.append(f"extra.{lang}.{rule}: unknown rule (known: {', '.join(RULES)})")
                elif rule == "trim" and not isinstance(words, dict):
                    out.append(f"extra.{lang}.trim: expected a mapping of filler to what to keep")
                elif rule != "trim" and not (isinstance(words, list) and all(isinstance(w, str) and w for w in words)):
                    out.append(f"extra.{lang}.{rule}: expected a list of words")
        return out

    def clean(self, s: str, lang: str = "") -> str:
        """``s`` without its fillers; counts each removal in ``self.counts``.  ``lang`` picks the
        lexicon's rules for that language; a language the lexicon lacks ("", und) gets them all."""
        t = s
        found: list[str] = []
        for rules, candidate, kept in ([self.by_lang[lang]] if lang in self.by_lang else self.by_lang.values()):
            if candidate is None or not candidate.search(t):
                continue
            aside: list[str] = []
            if kept is not None:    # 呃逆 (hiccups), uh-huh (yes): never fillers
                def put_aside(m: re.Match) -> str:
                    aside.append(m.group(0))
                    return chr(0xF0000 + len(aside) - 1)
                t = kept.sub(put_aside, t)
            for kind, pattern, repl in rules:
                def count(m: re.Match, kind=kind, repl=repl) -> str:
                    word = m.group(0).strip(" \t，,、~～….—-").lower()
                    found.append(f"{m.group(1).lower()} (repeat)" if kind == "repeated" else word)
                    return m.expand(repl) if kind != "trim" else repl
                t = pattern.sub(count, t)
            if aside:
                t = _KEPT.sub(lambda m: aside[ord(m.group(0)) - 0xF0000], t)
        if not found:
            return s
        for pattern, repl in _TIDY:
            t = pattern.sub(repl, t)
        t = t.strip()
        if not _WORD_CHAR.search(t):
            self.counts["kept_whole_turn"] += 1   # only fillers: they carry the turn's meaning
            return s
        if t[:1].islower() and s.lstrip()[:1].isupper():
            t = _SENTENCE_START.sub(lambda m: m.group(1).upper(), t, count=1)
        for word in found:
            self.counts[word] += 1
        return t

    def process(self, rec: dict) -> dict | Drop:
        removed = False
        lang = rec.get("lang") or ""
        for m in turns(rec, self.options["roles"]):
            t = self.clean(m["content"], lang)
            if t != m["content"]:
                m["content"], removed = t, True
        if self.options["documents"] and not rec.get("messages") and isinstance(rec.get("text"), str):
            t = self.clean(rec["text"], lang)
            if t != rec["text"]:
                rec["text"], removed = t, True
        if removed:
            rec["meta"]["fillers_removed"] = True
            self.counts["records_changed"] += 1
        return rec
