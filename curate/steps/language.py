"""language: label every record's ``lang`` and keep only the configured languages.

Cheap evidence first, langdetect last (it runs ~200 docs/s and calls 今天天气真好 Korean):

1. **Script counts** over the record's text (the first ``max_chars`` characters): where CJK
   characters outnumber Latin words (``患者持续性胸痛,心电图ST段抬高`` is zh), kana (at least
   ``kana_share`` of the CJK characters) means Japanese, mostly Hangul Korean, otherwise Chinese.
2. **English by function words**: Latin-script text whose words are at least ``en_share``
   English function words (the, of, and, is, ...) is English.  The list leaves out words that
   are also common in other Latin-script languages (a, in, die, de, no ...), and frequent words
   of those languages (und, est, los ...) or accented letters count against English.  Plain
   ASCII words with no sign of another language (a list, code, ``Name three primary colors.``)
   are English too: langdetect guesses wildly there (it calls "Hello" Finnish).
   For a dialogue, the user turns decide first when their evidence is clear (a Chinese
   instruction with a Python answer is Chinese); otherwise the whole text is judged.
3. **langdetect** (seeded, so the same text always gets the same label) on the first
   ``detect_chars`` characters of what is left: French, German, Spanish, Cyrillic ...

Text with too few letters to judge (``min_letters``; e.g. "1+1=2") is labelled ``und`` and kept
when ``keep_undetermined`` is true.  Records in other languages are dropped with the reason
``language:<code>``.  ``self.counts`` tells how each decision was made (``by_script``,
``by_function_words``, ``by_langdetect``) and how many records each language has.

    >>> from curate.steps.language import Language
    >>> lang = Language()
    >>> [lang.identify(t) for t in ("今天天气真好", "The patient has a fever.", "こんにちは、元気ですか")]
    ['zh', 'en', 'ja']
"""
from __future__ import annotations

import re

from ..schema import all_text
from ..step import Drop, RecordStep
from .textutil import HAN, HANGUL, KANA, numbers

_HAN = re.compile(f"[{HAN}]")
_KANA = re.compile(f"[{KANA}]")
_HANGUL = re.compile(f"[{HANGUL}]")
_KANA_OR_HANGUL = re.compile(f"[{KANA}{HANGUL}]")   # one scan where most text has neither
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+(?:'[a-z]+)?")
_ASCII_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_OTHER_LETTER = re.compile(r"[^\W\d_A-Za-z\u00c0-\u024f" + HAN + KANA + HANGUL + "]")
# English function words that are rare as words in other Latin-script languages.
EN_FUNCTION_WORDS = frozenset("""
the of and to is that for it with was are be this by you not or have from they we his her which
were what when can there their will would should your how does has had been but if than then
these those also into more some such only other about who my he she them our its all any each
i it's don't can't isn't i'm you're there's what's could may might must shall being am very
just because while where why over under after before between through during without within
""".split())
# Frequent words of other Latin-script languages that are not English words: evidence against English.
FOREIGN_WORDS = frozenset("""
der die das und ist nicht ein eine einen ich sie wir mit auf für auch sich dem den des
le la les et est une des du pas je il elle nous vous avec dans pour sur qui ce cette sont
de en el los las y es una por para con que del lo se su al como más pero sus
het een van dat niet ik zijn ze wat
il che di per sono gli della non una anche
não um uma são com os ao pelo pela você
""".split())


def _function_words(s: str) -> tuple[int, int, int]:
    """(English function words, other languages' function words, ASCII words) in ``s``.  Foreign
    words count only in lower case: "Los Angeles" and "Der Spiegel" are names in English text."""
    words = _ASCII_WORD.findall(s)
    # map() over set lookups runs in C: this is the hot loop of English text.
    return (sum(map(EN_FUNCTION_WORDS.__contains__, map(str.lower, words))),
            sum(map(FOREIGN_WORDS.__contains__, words)), len(words))


def _count(pattern: re.Pattern, s: str) -> int:
    """How many characters of ``s`` the one-character class ``pattern`` matches (subn builds no
    list of matches; a search first skips the count where there are none, the common case)."""
    return pattern.subn("", s)[1] if pattern.search(s) else 0


LANGDETECT_MAP = {"zh-cn": "zh", "zh-tw": "zh"}


class Language(RecordStep):
    name = "language"
    defaults: dict = {
        "keep": ["zh", "en"],         # ISO 639-1 codes; [] keeps every language (labels only)
        "keep_undetermined": True,    # keep text too short or letterless to judge (lang "und")
        "min_letters": 3,
        "kana_share": 0.1,            # kana among CJK characters at or above this: Japanese
        "en_share": 0.2,              # English function words among Latin words at or above this: English
        "max_chars": 2000,            # script counts look at this many characters
        "detect_chars": 300,          # langdetect sees this many
    }

    def __init__(self, options=None, ctx=None):
        super().__init__(options, ctx)
        self.keep = set(self.options["keep"])

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        out = []
        keep = options.get("keep")
        if not isinstance(keep, list) or not all(isinstance(k, str) and re.fullmatch(r"[a-z]{2,3}", k) for k in keep):
            out.append(f"keep: expected a list of language codes like [zh, en], got {keep!r}")
        for key, v in numbers(options, "kana_share", "en_share").items():
            if not 0 <= v <= 1:
                out.append(f"{key}: must be between 0 and 1, got {v}")
        for key, v in numbers(options, "min_letters", "max_chars", "detect_chars").items():
            if v < 1:
                out.append(f"{key}: must be at least 1, got {v}")
        return out

    def identify(self, text: str, prompt: str | None = None) -> str:
        """The language code of ``text``; records how it was decided in ``self.counts``.

        ``prompt`` (a dialogue's user turns) decides first when its evidence is clear: a Chinese
        instruction with a Python answer is a Chinese record, not a Catalan one."""
        if prompt:
            p = prompt[: self.options["max_chars"]]
            decided = self._clear_evidence(p)
            if not decided and len(_LATIN_WORD.findall(p)) >= 5:
                decided = self._weak_evidence(p)   # "Write fifty words in French." asks in English
            if decided:
                return self._by(*decided)
        s = text[: self.options["max_chars"]]
        decided = self._clear_evidence(s) or self._weak_evidence(s)
        if decided:
            return self._by(*decided)
        return self._by("langdetect", self._langdetect(s[: self.options["detect_chars"]]))

    def _clear_evidence(self, s: str) -> tuple[str, str] | None:
        """(how, lang) from script counts or English function words, or None."""
        o = self.options
        words = None
        if not s.isascii():
            han = _count(_HAN, s)
            kana, hangul = (_count(_KANA, s), _count(_HANGUL, s)) if _KANA_OR_HANGUL.search(s) else (0, 0)
            cjk = han + kana + hangul
            # CJK characters outnumber Latin words.  When they are half the text or more they
            # do without counting: every Latin word takes at least one of the other characters.
            if cjk and (2 * cjk >= len(s) or cjk >= len(words := _LATIN_WORD.findall(s))):
                if kana and kana >= o["kana_share"] * cjk:
                    return "script", "ja"
                if hangul >= han + kana:
                    return "script", "ko"
                return "script", "zh"
        if words is None:
            words = _LATIN_WORD.findall(s)
        if len(words) < 3:
            return None
        function, foreign, n = _function_words(s)
        accented = len(words) - sum(map(str.isascii, words))
        if function > foreign and function >= o["en_share"] * n and accented * 10 <= len(words):
            return "function_words", "en"
        return None

    def _weak_evidence(self, s: str) -> tuple[str, str] | None:
        """Too little text to judge, or plain ASCII words with no sign of another language."""
        words = _LATIN_WORD.findall(s)
        cjk = _count(_HAN, s) + _count(_KANA, s) + _count(_HANGUL, s) if not s.isascii() else 0
        others = _count(_OTHER_LETTER, s) if not s.isascii() else 0
        if sum(map(len, words)) + cjk + others < self.options["min_letters"]:
            return "too_little_text", "und"
        if cjk or others > sum(map(len, words)) or any(not w.isascii() for w in words):
            return None
        function, foreign, _ = _function_words(s)
        if foreign <= function:
            # ASCII words, no more foreign function words than English ones: a list, code, a
            # name, a short answer.  langdetect guesses wildly here ("Hello" is Finnish to it).
            return "ascii_words", "en"
        return None

    def _by(self, how: str, lang: str) -> str:
        self.counts[f"by_{how}"] += 1
        return lang

    def _langdetect(self, text: str) -> str:
        from langdetect import DetectorFactory, detect   # imported here: loading its profiles takes ~0.5 s
        from langdetect.lang_detect_exception import LangDetectException
        DetectorFactory.seed = 0          # langdetect samples at random unless seeded
        try:
            code = detect(text)
        except LangDetectException:
            return "und"
        return LANGDETECT_MAP.get(code, code)

    def process(self, rec: dict) -> dict | Drop:
        msgs = rec.get("messages") or []
        if msgs:
            prompt = "\n".join(m["content"] for m in msgs if m["role"] == "user")
            lang = self.identify(all_text(rec), prompt)
        else:
            lang = self.identify(rec.get("text") or "")
        rec["lang"] = lang
        self.counts[f"lang:{lang}"] += 1
        if not self.keep or lang in self.keep or (lang == "und" and self.options["keep_undetermined"]):
            return rec
        return Drop(f"language:{lang}", f"labelled {lang}; keep: {sorted(self.keep)}")
