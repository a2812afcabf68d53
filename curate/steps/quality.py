"""quality: drop records whose answer cannot teach anything.

Checks, in order, each with its reason:

* ``quality:empty_prompt`` / ``quality:empty_answer``: a user or assistant turn with no text.
* ``quality:too_short`` / ``quality:too_long``: the final answer (or the document) has fewer than
  ``min_answer_chars`` / more than ``max_answer_chars`` characters, not counting whitespace
  (documents: ``min_text_chars`` / ``max_text_chars``).  The default minimum is 1: short answers
  are often right (alpaca's "6", "消极的"); raise it for a corpus of long-form answers.
* ``quality:answer_equals_question``: the answer is the question again, or its first line (the
  instruction, the title), ignoring case, whitespace and punctuation.  An answer equal to the
  input part is kept: "correct this sentence" may need no change.
* ``quality:repetition``: the share of repeated n-grams in an answer is above
  ``max_repeated_ngram_ratio`` (0.3).  CJK text is measured in ``ngram_chars``-character
  n-grams, other text in ``ngram_words``-word n-grams, so a loop of 好的好的好的 and an answer
  pasted twice (ratio 0.5; the real medical corpus has a few dozen) are caught alike.  Songs
  with a repeated chorus score 0.25-0.4: raise the threshold for creative-writing data.  Only
  answers with ``min_ngrams`` n-grams or more are judged.
* ``quality:non_text``: less than ``min_text_share`` of an answer's visible characters
  (layout characters ``-_|=*#~.`` of tables, blanks and lists left out) are letters or digits
  (symbol runs, combining-mark garbage; tables, JSON arrays and regexes stay above), or more
  than ``max_junk_share`` are emoji, box drawing, private-use or U+FFFD characters.

Answers are the assistant turns (all of them for repetition and non-text, the final one for
length); a plain ``text`` document is judged as an answer.

    >>> from curate.steps.quality import repeated_ngram_ratio
    >>> round(repeated_ngram_ratio("好的" * 20), 2), repeated_ngram_ratio("患者持续性胸痛，心电图ST段抬高表现")
    (0.94, 0.0)
"""
from __future__ import annotations

import re

from ..step import Drop, RecordStep
from .textutil import numbers

_NOT_WORD = re.compile(r"[\W_]")   # one character at a time: faster than runs with sub("")
_WORD = re.compile(r"[^\W_]+")
# Table rules, blanks to fill in and list bullets: layout, neither text nor junk.
_LAYOUT = "-_|=*#~."
# Symbols that are not text: emoji and pictographs, private use, replacement characters, box drawing.
_JUNK = re.compile("[\ufffd\ue000-\uf8ff\U000f0000-\U0010ffff\u2500-\u259f\U0001f000-\U0001faff\u2600-\u27bf]")


_NOT_ALNUM_BYTES = bytes(b for b in range(128) if not chr(b).isalnum())


def letters_of(text: str) -> str:
    """The letters and digits of ``text`` (CJK included), nothing else."""
    if text.isascii():   # bytes.translate is several times faster than a regex here
        return text.encode().translate(None, _NOT_ALNUM_BYTES).decode()
    return _NOT_WORD.sub("", text)


def _cjk_share(letters: str) -> float:
    """Rough share of CJK among letters and digits: they take 3 UTF-8 bytes, ASCII 1 (fast)."""
    return (len(letters.encode()) - len(letters)) / 2 / len(letters) if letters else 0.0


_SLICES: dict[int, list[slice]] = {}


def _distinct_ngrams(s: str, n: int) -> int:
    """How many distinct n-character substrings ``s`` has.  As 4-byte code units (UTF-32) every
    n-gram is a fixed-width bytes slice, made from slice objects built once and reused: the set
    is then built in C, without the str slices' per-character width checks."""
    total = len(s) - n + 1
    have = _SLICES.setdefault(n, [])
    if len(have) < total:
        have.extend(slice(4 * i, 4 * (i + n)) for i in range(len(have), max(total, 2 * len(have), 4096)))
    units = s.encode("utf-32-le", "surrogatepass")   # lone surrogates are characters here too
    return len(set(map(units.__getitem__, have[:total])))


def repeated_ngram_ratio(text: str, n_chars: int = 10, n_words: int = 5, min_ngrams: int = 1,
                         letters: str | None = None) -> float:
    """Share of the text's n-grams that repeat an earlier one: 0 for none, 0.5 for a text pasted
    twice, near 1 for a loop.  CJK text (half or more of its letters) is measured in characters
    (punctuation and spaces left out), other text in words.  Text with fewer than ``min_ngrams``
    n-grams scores 0: a two-line code snippet repeating a name is not a loop."""
    if not text.isascii():
        letters = (letters if letters is not None else letters_of(text)).lower()
        if _cjk_share(letters) >= 0.5:
            total = len(letters) - n_chars + 1
            distinct = _distinct_ngrams(letters, n_chars) if total > 0 else 0
            return 1.0 - distinct / total if total >= max(1, min_ngrams) else 0.0
    w = _WORD.findall(text.lower())
    total = len(w) - n_words + 1
    if total < max(1, min_ngrams):
        return 0.0
    return 1.0 - len(set(zip(*[w[i:] for i in range(n_words)]))) / total


class Quality(RecordStep):
    name = "quality"
    defaults: dict = {
        "min_answer_chars": 1,
        "max_answer_chars": 16000,
        "min_text_chars": 20,          # plain documents
        "max_text_chars": 200000,
        "drop_answer_equals_question": True,
        "ngram_chars": 10,             # n-gram size for CJK text (characters)
        "ngram_words": 5,              # n-gram size for other text (words)
        "max_repeated_ngram_ratio": 0.3,
        "min_ngrams": 20,              # judge repetition only on answers with this many n-grams
        "min_text_share": 0.2,         # letters and digits among visible non-layout characters, at least
        "max_junk_share": 0.3,         # emoji, box drawing, private use, U+FFFD among them, at most
        "min_chars_for_text_share": 10,
    }

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        out = []
        n = numbers(options, *cls.defaults)
        for lo, hi in (("min_answer_chars", "max_answer_chars"), ("min_text_chars", "max_text_chars")):
            if lo in n and hi in n and (n[lo] < 0 or n[hi] < n[lo]):
                out.append(f"{lo}/{hi}: need 0 <= {lo} <= {hi}, got {n[lo]} and {n[hi]}")
        for key in ("ngram_chars", "ngram_words"):
            if key in n and n[key] < 1:
                out.append(f"{key}: must be at least 1, got {n[key]}")
        for key in ("max_repeated_ngram_ratio", "min_text_share", "max_junk_share"):
            if key in n and not 0 <= n[key] <= 1:
                out.append(f"{key}: must be between 0 and 1, got {n[key]}")
        return out

    def judge(self, answers: list[str], prompt: str | None, document: bool) -> Drop | None:
        """Why these answers (assistant turns, last one final; or one document) fail, or None."""
        o = self.options
        if any(not a.strip() for a in answers):
            return Drop("quality:empty_answer", "an assistant turn is empty")
        final = answers[-1]
        size = sum(map(len, final.split()))
        lo, hi = (o["min_text_chars"], o["max_text_chars"]) if document else (o["min_answer_chars"], o["max_answer_chars"])
        if size < lo:
            return Drop("quality:too_short", f"{size} characters < {lo}")
        if size > hi:
            return Drop("quality:too_long", f"{size} characters > {hi}")
        if prompt is not None and o["drop_answer_equals_question"] and len(final) <= len(prompt) + 10:
            fold = lambda t: letters_of(t).lower()
            a = fold(final)
            # The whole question, or its first line (the instruction of instruction+input, the
            # title of title+question).  An answer equal to the input is fine: "correct this
            # sentence" may need no change.
            if a and (a == fold(prompt) or a == fold(prompt.lstrip().split("\n", 1)[0])):
                return Drop("quality:answer_equals_question", "the answer repeats the question")
        for a in answers:
            letters = letters_of(a)
            r = repeated_ngram_ratio(a, o["ngram_chars"], o["ngram_words"], o["min_ngrams"], letters)
            if r > o["max_repeated_ngram_ratio"]:
                return Drop("quality:repetition", f"{r:.2f} of the n-grams repeat")
            visible = (size if a is final else sum(map(len, a.split()))) - sum(map(a.count, _LAYOUT))
            if visible >= o["min_chars_for_text_share"]:
                share = len(letters) / visible
                if share < o["min_text_share"]:
                    return Drop("quality:non_text", f"only {share:.0%} letters or digits")
                junk = len(_JUNK.findall(a)) / visible if not a.isascii() else 0.0
                if junk > o["max_junk_share"]:
                    return Drop("quality:non_text", f"{junk:.0%} emoji, symbols or replacement characters")
        return None

    def process(self, rec: dict) -> dict | Drop:
        msgs = rec.get("messages") or []
        if msgs:
            users = [m["content"] for m in msgs if m["role"] == "user"]
            if not users or any(not u.strip() for u in users):
                drop = Drop("quality:empty_prompt", "a user turn is empty")
            else:
                answers = [m["content"] for m in msgs if m["role"] == "assistant"]
                last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
                question = next((m["content"] for m in reversed(msgs[:last]) if m["role"] == "user"), None)
                drop = self.judge(answers, question, document=False)
        else:
            drop = self.judge([rec.get("text") or ""], None, document=True)
        if drop is not None:
            return drop
        return rec
