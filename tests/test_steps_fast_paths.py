"""The text steps' fast paths give exactly what the plain formulations they replaced give.

Each fast path (issue 2, throughput) is checked against the straightforward code it replaced,
kept here as the reference, on Chinese and English edge cases and on every text of the real
corpora in ../shared/data (skipped where absent).  A whole `curate run` of the real corpora
before and after these changes gave byte-identical curated and rejects files (BENCHMARKS.md)."""
from __future__ import annotations

import glob
import json
import re

import pytest

from curate.reading import SourceSpec, read_source
from curate.steps import language, normalize, quality, safety
from curate.steps.language import Language
from curate.steps.normalize import Normalize
from curate.steps.safety import Safety
from curate.steps.textutil import HAN, HANGUL, KANA

# ~100k real texts through every reference: 30-35 s, so out of `make test-quick` (the steps'
# behaviour on edge cases is tested quickly in test_steps_text.py).
pytestmark = pytest.mark.slow

MEDICAL = "medical_dialogue/internal_medicine_5000-6000.gb18030.csv"

EDGE_CASES = [
    "", " ", "a", "好", "今天天气真好", "患者持续性胸痛,心电图ST段抬高 (急性)?  每日3次，每次10mg",
    "好的" * 40, "The patient has a fever. " * 8, "こんにちは、元気ですか", "안녕하세요 반갑습니다",
    "电话13812345678，身份证11010519491231002X", "mail me: a.b@example.com", "ip 192.168.1.10 or fe80::1:2:3",
    "12:30:45 and 1.2.3", "1 2 3 4 5 6 7", "a  b   c", "  lead", "trail  ", "中  文", "x ( y ) z", "（括号）",
    " (注)", "word(注释)word", "a\t  b\n  c", "Ⅰ期 ①② ½ 10⁹/L ……", "Hello，world", "血糖7.8mmol/L.",
    "\ud800孤立代理", "ab" * 600, "def f(x):\n    return x  # code", "`code`  ,  www.a.com  @x",
]


def real_texts(shared_data) -> list[str]:
    """Every message and document of the real corpora (~100k texts)."""
    specs = [SourceSpec(str(shared_data / MEDICAL), mapping={"user": "ask", "assistant": "answer"})]
    specs += [SourceSpec(p) for p in sorted(glob.glob(str(shared_data / "alpaca_*/*.json")))]
    out = []
    for spec in specs:
        for rec, _ in read_source(spec):
            if rec is not None:
                out += [m["content"] for m in rec["messages"]] + ([rec["text"]] if rec.get("text") else [])
    return out


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    raw = real_texts(shared_data)
    norm = Normalize()
    return EDGE_CASES + [norm.clean(t) for t in raw] + raw   # steps after normalize see clean text


# -- the reference formulations ---------------------------------------------------------------

def ref_repeated_ngram_ratio(text, n_chars=10, n_words=5, min_ngrams=1):
    if not text.isascii():
        letters = re.sub(r"[\W_]+", "", text).lower()
        if quality._cjk_share(letters) >= 0.5:
            total = len(letters) - n_chars + 1
            distinct = len({letters[i:i + n_chars] for i in range(total)}) if total > 0 else 0
            return 1.0 - distinct / total if total >= max(1, min_ngrams) else 0.0
    w = re.findall(r"[^\W_]+", text.lower())
    total = len(w) - n_words + 1
    if total < max(1, min_ngrams):
        return 0.0
    return 1.0 - len(set(zip(*[w[i:] for i in range(n_words)]))) / total


REF_MAYBE_PII = re.compile(r"\d(?:[\s-]?\d){6}|@|\d\.\d{1,3}\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]{0,4}:")
REF_PATTERNS = {   # name in normalize -> the pattern it replaced
    "_SPACE_RUN": r"(?<=\S) {2,}(?=\S)",
    "_PARENS": r" ?[(（]([^()（）\n]{0,200})[)）] ?",
    "_MARK": r" *([,;:?!]+) *",
}


def ref_script_counts(s: str) -> tuple[int, int, int, int]:
    return (len(re.findall(f"[{HAN}]", s)), len(re.findall(f"[{KANA}]", s)), len(re.findall(f"[{HANGUL}]", s)),
            len(language._LATIN_WORD.findall(s)))


def ref_function_words(s: str) -> tuple[int, int, int]:
    words = language._ASCII_WORD.findall(s)
    return (sum(w.lower() in language.EN_FUNCTION_WORDS for w in words),
            sum(w in language.FOREIGN_WORDS for w in words), len(words))


# -- the checks -------------------------------------------------------------------------------

def test_repetition_ratio_matches_reference(texts):
    for t in texts[: len(texts) // 2 + len(EDGE_CASES)]:   # quality sees normalized text: raw text once
        for n_chars, min_ngrams in ((10, 1), (3, 1)):
            assert quality.repeated_ngram_ratio(t, n_chars, 5, min_ngrams) == \
                ref_repeated_ngram_ratio(t, n_chars, 5, min_ngrams), t[:80]


def test_letters_match_reference(texts):
    for t in texts:
        assert quality.letters_of(t) == re.sub(r"[\W_]+", "", t), t[:80]


def test_pii_precheck_matches_reference(texts):
    hits = 0
    for t in texts:
        expected = REF_MAYBE_PII.search(t) is not None
        assert safety.maybe_pii(t) == expected, t[:80]
        hits += expected
    assert hits > 100   # the real corpora do hold numbers, addresses and e-mail


@pytest.mark.parametrize("name", sorted(REF_PATTERNS))
def test_normalize_patterns_match_reference(texts, name):
    new, ref = getattr(normalize, name), re.compile(REF_PATTERNS[name])
    for t in texts:
        assert [(m.span(), m.groups()) for m in new.finditer(t)] == [(m.span(), m.groups()) for m in ref.finditer(t)]


def test_cjk_character_test_matches_the_regex():
    """_IS_CJK skips the regex below the lowest CJK code point: same answer for every character."""
    regex = re.compile(normalize._CJK)
    assert all(normalize._IS_CJK(chr(c)) == (regex.match(chr(c)) is not None) for c in range(0x110000))


def test_script_counts_and_language_decisions_match_reference(texts):
    """Counts without match lists, and _clear_evidence as it was written before the shortcuts
    (CJK half the text needs no word count; no kana or Hangul scan finds none to count)."""
    lang = Language()

    def ref_clear(s):
        o = lang.options
        if not s.isascii():
            han, kana, hangul, latin = ref_script_counts(s)
            cjk = han + kana + hangul
            if cjk and cjk >= latin:
                if kana and kana >= o["kana_share"] * cjk:
                    return "script", "ja"
                if hangul >= han + kana:
                    return "script", "ko"
                return "script", "zh"
        words = language._LATIN_WORD.findall(s)
        if len(words) < 3:
            return None
        function, foreign, n = ref_function_words(s)
        accented = len(words) - sum(w.isascii() for w in words)
        if function > foreign and function >= o["en_share"] * n and accented * 10 <= len(words):
            return "function_words", "en"
        return None

    for t in texts:
        s = t[:2000]
        assert (language._count(language._HAN, s), language._count(language._KANA, s),
                language._count(language._HANGUL, s)) == ref_script_counts(s)[:3]
        assert language._function_words(s) == ref_function_words(s)
        assert lang._clear_evidence(s) == ref_clear(s), t[:80]


def test_unsafe_precheck_finds_the_same_phrases(texts):
    s = Safety()
    for t in texts:
        low = t.lower()
        assert any(map(low.__contains__, s.en_phrases)) == any(p in low for p in s.en_phrases)


def test_generated_corpus_lines_match_reference(shared_bench, tmp_path):
    """make_dedup_corpus.py output (the 1M benchmark's data): mixed Chinese and English documents."""
    import subprocess
    import sys
    path = tmp_path / "gen.jsonl"
    subprocess.run([sys.executable, str(shared_bench / "make_dedup_corpus.py"), "3000", str(path), "--seed", "1"],
                   check=True, capture_output=True)
    norm = Normalize()
    for line in path.read_text(encoding="utf-8").splitlines():
        t = norm.clean(json.loads(line)["text"])
        assert quality.repeated_ngram_ratio(t, 10, 5, 20) == ref_repeated_ngram_ratio(t, 10, 5, 20)
        assert safety.maybe_pii(t) == (REF_MAYBE_PII.search(t) is not None)

