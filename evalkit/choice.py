"""Which option letter a free-text answer chose.

The rule: the *last explicit answer marker* wins (答案是 / 答案： / 正确答案 / 故选 / 选 / The answer
is / ANSWER: ...), after NFKC (full-width ： （ Ｂ become : ( B), with bold, brackets and quotes
around the letter allowed.  Without a marker: a weaker "B项正确" / "B is correct" statement, then a
reply that is just the letter or starts with it ("B. 常并发休克", "(B) ..."), then a reply that
quotes exactly one option's text.  Otherwise ``None`` (counted as unparsed, and wrong).

Popular evaluators take the first capital letter or need an exact format, and fail on:

    >>> extract_choice("根据题意，A项错误，B项正确。答案：B")
    'B'
    >>> extract_choice("The answer is (C).")
    'C'
    >>> extract_choice("答案：**D**")
    'D'
"""
from __future__ import annotations

import re
import unicodedata
from typing import Sequence

LETTERS = "ABCDEFGHIJ"

# Explicit answer markers (matched on NFKC text, case-insensitive); the letter follows them.
_STRONG = [
    r"(?:正确|最终|最佳|参考|标准)?答案(?:应该|应当|应|就|则)?(?:是|为|选|选择)?\s*[:：]?",
    r"正确(?:的)?(?:选项|选择)(?:应该|应当|应)?(?:是|为)?\s*[:：]?",
    r"(?:故|所以|因此|因而|综上|综上所述|则|应|应该|我|我会|可|本题)\s*[,，]?\s*(?:选择|选)(?:项)?",
    r"(?<![a-z])答\s*[:：]",
    r"(?<![a-z])选(?:择)?\s*[:：]?",
    r"而是",
    r"(?:the\s+)?(?:correct|right|best|final|most\s+appropriate|most\s+likely)?\s*(?:answer|option|choice)"
    r"\s*(?:is|would\s+be|should\s+be|must\s+be|will\s+be|=|:)",
    r"(?<![a-z])answer\s*[:=]",
    r"\bi(?:\s+would|\s+will|'d)?\s+(?:choose|pick|select|go\s+with)",
    r"\b(?:so|thus|therefore|hence)\s*,?\s+(?:the\s+answer\s+is\s+|it\s+is\s+|it's\s+)?",
]
# Weaker statements, used only when no explicit marker exists.
_WEAK_AFTER = r"\s*(?:项|选项)?\s*(?:是)?(?:正确|对|符合题意|正确的|最合适|最恰当|为正确答案|is\s+(?:the\s+)?(?:correct|right|best))"

_FILLER = r"[\s\"'“”‘’`*_$】\]]*(?:选项|option|choice)?[\s\"'“”‘’`*_$]*"
_OPEN = r"[(\[{<【「『〔]?"


def _letter_rx(letters: str) -> str:
    return f"[{letters}{letters.lower()}]"


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"\\(?:boxed|text|textbf|mathrm)\s*\{\s*([^{}]*)\}", r" \1 ", text)   # \boxed{B}
    return text.replace("**", " ").replace("__", " ")


def _accept(text: str, end: int, letter: str, bracketed: bool) -> bool:
    """A letter right after a marker is an answer unless it is part of a word, a lower-case
    article ("the answer is a drug"), negated ("A项错误"), or one of several ("A和C")."""
    after = text[end:end + 12]
    if after[:1].isascii() and after[:1].isalnum():
        return False
    if letter.islower() and not bracketed and not re.match(r"\s*(?:$|[.)\]}:;,。，、】」\n])", after):
        return False
    if re.match(r"\s*(?:项|选项)?\s*(?:是)?(?:错误|不正确|错|不对|不符合|不是|is\s+(?:not|in)correct|is\s+wrong)", after,
                re.IGNORECASE):
        return False
    if re.match(r"\s*[)\]}】」』〕]?\s*(?:和|或|与|及|、|,|，|and|or|&|/)\s*[(\[{<【「『]?\s*[A-J](?![A-Za-z])", after):
        return False
    return True


def _strong(text: str, letters: str) -> list[tuple[int, str]]:
    """(position, letter) for every letter that follows an explicit answer marker."""
    L = _letter_rx(letters)
    found = []
    for marker in _STRONG:
        for m in re.finditer(rf"(?:{marker}){_FILLER}({_OPEN})\s*({L})", text, re.IGNORECASE):
            if _accept(text, m.end(2), m.group(2), bool(m.group(1))):
                found.append((m.start(2), m.group(2).upper()))
    return found


def _weak(text: str, letters: str) -> list[tuple[int, str]]:
    """(position, letter) for "B项正确" / "选项B是正确的" / "option B is correct"."""
    rx = rf"(?<![A-Za-z]){_OPEN}([{letters}])[)\]}}>】」』〕]?(?={_WEAK_AFTER})"
    return [(m.start(1), m.group(1)) for m in re.finditer(rx, text)
            if _accept(text, m.end(1), m.group(1), False)]


def extract_choice(text: str | None, choices: Sequence[str] | None = None, letters: str | None = None) -> str | None:
    """The option letter ``text`` chose, or None.  ``choices``: the option texts, in letter order."""
    if not text or not text.strip():
        return None
    letters = letters or LETTERS[: len(choices)] if choices else (letters or "ABCD")
    norm = _normalize(text)

    hits = _strong(norm, letters) or _weak(norm, letters)
    if hits:
        return max(hits)[1]   # the last explicit marker wins

    # just the letter, or a reply that starts with "B." / "(B)" / "B、" / "B:"
    core = norm.strip().strip("\"'“”‘’`*_ ")
    m = re.fullmatch(rf"{_OPEN}\s*([{letters}])\s*[)\]}}>】」』〕]?\s*[.。:：、]?", core)
    if m:
        return m.group(1)
    m = re.match(rf"{_OPEN}\s*([{letters}])\s*(?:[)\]}}>】」』〕]\s*|[.。:：、．]\s*|\s+(?=[^\x00-\x7f]))", core)
    if m and (m.group(0).strip()[:1] in "([{<【「『〔" or len(m.group(0).strip()) >= 2):
        return m.group(1)

    # the text of exactly one option
    if choices:
        plain = _squash(norm)
        found = {letters[i] for i, c in enumerate(choices[: len(letters)])
                 if c and _squash(str(c)) and _squash(str(c)) in plain}
        # an option that is part of another matched option's text does not count on its own
        found = {x for x in found if not any(x != y and _squash(str(choices[letters.index(x)])) in
                                              _squash(str(choices[letters.index(y)])) for y in found)}
        if len(found) == 1:
            return found.pop()
    return None


def _squash(s: str) -> str:
    return re.sub(r"[\s。.,，、;；:：!！?？\"'“”‘’()（）]", "", unicodedata.normalize("NFKC", s)).lower()


def choice_letters(n: int) -> str:
    if not 2 <= n <= len(LETTERS):
        raise ValueError(f"a choice question needs 2..{len(LETTERS)} options, got {n}")
    return LETTERS[:n]
