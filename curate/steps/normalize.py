"""normalize: one canonical form for every text, so later steps (and the model) see no noise.

What it does, per message content and per plain ``text`` document:

1. **NFKC where safe**: full-width letters and digits, ideographic spaces, ㎎ and friends become
   their plain forms, but characters whose NFKC form changes the meaning are kept as they are:
   superscripts and subscripts (``10⁹/L`` must not become ``109/L``), the ellipsis ``…`` (``……``
   must not become ``......``), circled numbers and vulgar fractions.
2. **Chinese punctuation policy**: NFKC turns ，：；？！（） into ASCII; in Chinese text they are
   restored to full width.  A mark becomes full width when a neighbour is CJK (a period only
   when it follows CJK and ends a sentence); numbers (``3.5mg``, ``1,000``, ``10:30``), URLs,
   e-mail addresses and code spans are left alone.  ``punctuation: keep`` switches this off.
3. **Whitespace and control characters**: control and zero-width characters removed, line ends
   unified, trailing spaces and runs of blank lines trimmed, runs of spaces inside a line
   collapsed (indentation at line start is kept, for code).  ``cjk_spaces: true`` also removes
   spaces between two Han characters (off by default: poems and lists use them).
4. **Template unification** (dialogues only): chat scaffolding left in the text is stripped
   (``### Instruction:``, ``Human:``, ``问：``, ``[INST]``, ``<|im_start|>`` ...; the lists are
   options), then the first user turn of every record of a task is put into that task's
   template: ``templates: {default: "{prompt}", 医疗: "科室：{task}\\n{prompt}"}``.

What changed is listed in ``meta["normalized"]`` and counted per kind in ``self.counts``.

    >>> from curate.steps.normalize import Normalize
    >>> n = Normalize()
    >>> n.clean("患者持续性胸痛,心电图ST段抬高 (急性)?  每日3次，每次10mg")
    '患者持续性胸痛，心电图ST段抬高（急性）？每日3次，每次10mg'
"""
from __future__ import annotations

import html
import re
import string
import unicodedata

from ..step import Drop, RecordStep
from .textutil import CJK_CONTEXT, HAN

# NFKC would change the meaning of these: keep them as they are.  The full-width marks
# ，：；？！（） are kept too: the punctuation policy decides their width by context.
_PROTECT = re.compile("([\u00b2\u00b3\u00b9\u00bc-\u00be\u2070-\u209f\u2026\u2150-\u218f\u2460-\u24ff"
                      "\u2776-\u2793\u3251-\u325f\u32b1-\u32bf\uff01\uff08\uff09\uff0c\uff1a\uff1b\uff1f]+)")
# The common case of NFKC, done cheaply: full-width ASCII (but the marks above) and the ideographic space.
_FULL_WIDTH = re.compile("[\u3000\uff02-\uff07\uff0a\uff0b\uff0d-\uff19\uff1c-\uff1e\uff20-\uff5e]+")
_TO_HALF_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b\u200c\u200e\u200f\u2060\ufeff]")
_LINE_BREAKS = re.compile("\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_ODD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b\u200c\u200e\u200f\u2028\u2029\u2060\ufeff]")
_TRAILING = re.compile(r"[ \t]+(?=\n|$)")
_BLANK_LINES = re.compile(r"\n{3,}")
# (?<=\S) {2,}(?=\S), written to start with a literal space: the engine then jumps from space to space.
_SPACE_RUN = re.compile(r" (?<=\S ) +(?=\S)")
_HAN_SPACE = re.compile(f"(?<=[{HAN}]) +(?=[{HAN}])")
_HTML_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|apos|nbsp|#\d{1,6}|#[xX][0-9a-fA-F]{1,6});")

_CJK = f"[{CJK_CONTEXT}]"
_CJK_MATCH = re.compile(_CJK).match
_FIRST_CJK = min(c for c in CJK_CONTEXT if c != "-")   # the lowest code point of its ranges


def _IS_CJK(ch: str) -> bool:
    """Whether the character ``ch`` is CJK context; the comparison spares the regex for ASCII."""
    return ch >= _FIRST_CJK and _CJK_MATCH(ch) is not None
_FULL = dict(zip(",:;?!().", "，：；？！（）。"))
_HALF = {v: k for k, v in _FULL.items()}
# Marks are found by a plain scan (fast) and judged by their neighbours in a callback.
_MARK = re.compile(r"(?=[ ,;:?!]) *([,;:?!]+) *")   # the lookahead (implied) makes the scan skip faster
_FULL_MARK_BEFORE_NON_CJK = re.compile(f"[，；：？！](?!{_CJK})")
# Han within this many characters on both sides of a mark: the mark is in a Chinese sentence
# (每次20mg，2023年 keeps its ，; Hello，world becomes Hello,world).
_WINDOW = 10
_HAN_RE = re.compile(f"[{HAN}]")
_PERIOD = re.compile(f"\\.(?=$|\\n|{_CJK})")
_UNIT_END = re.compile(r"[A-Za-z0-9%/)\]]")
_HAN_TAIL = re.compile(f"[{HAN}][^\\s。！？]*$")
# The lookahead (implied by the rest) lets the engine skip characters that cannot start a match.
_PARENS = re.compile(r"(?=[ (（]) ?[(（]([^()（）\n]{0,200})[)）] ?")
# Spans never touched by the punctuation policy: code, URLs, e-mail addresses.
_SHIELD = re.compile(r"```.*?```|`[^`\n]+`|(?:https?|ftp)://[\w\-.~:/?#\[\]@!$&'*+,;=%]+|www\.[\w\-.~/?#=&%]+"
                     r"|[\w.%+-]+@[\w-]+(?:\.[\w-]+)+", re.S | re.A)
_PLACEHOLDER = re.compile("[\U000f0000-\U000ffffd]")

# Chat-template tokens that leak into raw corpora.
_SPECIAL_TOKENS = re.compile(r"<\|(?:im_start|im_end|user|assistant|system|endoftext|eot_id|begin_of_text)\|>"
                             r"(?:user|assistant|system)?|\[/?INST\]|<</?SYS>>|</?s>")
USER_PREFIXES = ["Instruction", "Human", "User", "Question", "Prompt", "Q", "问", "问题", "提问", "指令", "用户"]
ASSISTANT_PREFIXES = ["Response", "Assistant", "GPT", "Bot", "Output", "答", "回答", "输出", "助手"]
SECTION_PREFIXES = ["Input", "Context", "输入", "上下文"]


def _in_chinese(s: str, a: int, b: int) -> bool:
    """Han characters within _WINDOW characters on both sides of s[a:b] (same line)."""
    left, right = s[max(0, a - _WINDOW):a], s[b:b + _WINDOW]
    left, right = left[left.rfind("\n") + 1:], right.split("\n", 1)[0]
    return _HAN_RE.search(left) is not None and _HAN_RE.search(right) is not None


def _lead(prefixes: list[str]) -> re.Pattern:
    """``### Name:`` / ``Name:`` / ``Name：`` at the very start of a message."""
    alt = "|".join(sorted(map(re.escape, prefixes), key=len, reverse=True))
    return re.compile(rf"^\s*(?:#{{1,4}} *(?:{alt}) *(?:[:：] *\n?|\n)|(?:{alt}) *[:：] *)\s*", re.I)


class Normalize(RecordStep):
    name = "normalize"
    defaults: dict = {
        "nfkc": True,
        "html_entities": True,        # &lt; &amp; &#39; ... -> < & '  (scraped data is full of them)
        "punctuation": "zh",          # zh: full-width marks in Chinese text; keep: leave marks as they are
        "whitespace": True,
        "cjk_spaces": False,          # remove spaces between two Han characters
        "strip_scaffolding": True,
        "user_prefixes": USER_PREFIXES,
        "assistant_prefixes": ASSISTANT_PREFIXES,
        "section_prefixes": SECTION_PREFIXES,
        "templates": {"default": "{prompt}"},   # per task; {prompt} and {task} are filled in
    }

    def __init__(self, options=None, ctx=None):
        super().__init__(options, ctx)
        o = self.options
        self.user_lead = _lead(o["user_prefixes"])
        self.assistant_lead = _lead(o["assistant_prefixes"])
        sect = "|".join(map(re.escape, o["section_prefixes"]))
        self.section = re.compile(rf"\n\s*(?:#{{1,4}} *)?(?:{sect}) *[:：] *\n?", re.I) if sect else None
        tail = "|".join(sorted(map(re.escape, o["assistant_prefixes"] + ["Answer", "答案"]), key=len, reverse=True))
        self.trailing_answer = re.compile(rf"\n\s*(?:#{{1,4}} *)?(?:{tail}) *[:：]? *$", re.I)
        self.templates = {task: tuple(t.split("{prompt}")) for task, t in (o["templates"] or {}).items()}

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        out = []
        if options.get("punctuation") not in ("zh", "keep"):
            out.append(f"punctuation: {options.get('punctuation')!r} is not zh or keep")
        for key in ("user_prefixes", "assistant_prefixes", "section_prefixes"):
            v = options.get(key)
            if not isinstance(v, list) or not all(isinstance(p, str) and p.strip() for p in v):
                out.append(f"{key}: expected a list of non-empty strings")
        templates = options.get("templates")
        if not isinstance(templates, dict):
            return out + ["templates: expected a mapping of task (or default) to a template string"]
        for task, t in templates.items():
            if not isinstance(t, str):
                out.append(f"templates.{task}: expected a string, got {t!r}")
                continue
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(t) if f is not None]
            except ValueError as e:
                out.append(f"templates.{task}: {e} (write a literal brace as {{{{ or }}}})")
                continue
            if fields.count("prompt") != 1:
                out.append(f"templates.{task}: must contain {{prompt}} exactly once")
            for f in set(fields) - {"prompt", "task"}:
                out.append(f"templates.{task}: unknown placeholder {{{f}}} (known: {{prompt}}, {{task}})")
        return out

    # -- text-level passes ----------------------------------------------------------------------

    def clean(self, s: str, changed: set | None = None) -> str:
        """NFKC, punctuation and whitespace for one text; adds the kinds of change to ``changed``."""
        changed = set() if changed is None else changed
        o = self.options
        if o["whitespace"] and _ODD.search(s):
            t = _CONTROL.sub("", _LINE_BREAKS.sub("\n", s))
            if t != s:
                changed.add("control")
                s = t
        if o["html_entities"] and "&" in s:
            t = _HTML_ENTITY.sub(lambda m: html.unescape(m.group(0)), s)
            if t != s:
                changed.add("html_entities")
                s = t
        if o["nfkc"] and not s.isascii():
            t = _FULL_WIDTH.sub(lambda m: m.group(0).translate(_TO_HALF_WIDTH), s)
            if not unicodedata.is_normalized("NFKC", _PROTECT.sub("", t)):
                t = "".join(p if i % 2 else unicodedata.normalize("NFKC", p) for i, p in enumerate(_PROTECT.split(t)))
            if t != s:
                changed.add("nfkc")
                s = t
        if o["punctuation"] == "zh" and not s.isascii():
            t = self.punctuate(s)
            if t != s:
                changed.add("punctuation")
                s = t
        if o["whitespace"]:
            t = _TRAILING.sub("", s) if (" \n" in s or "\t" in s or s[-1:] == " ") else s
            if "\n\n\n" in t:
                t = _BLANK_LINES.sub("\n\n", t)
            if "  " in t:
                t = _SPACE_RUN.sub(" ", t)
            if o["cjk_spaces"] and " " in t:
                t = _HAN_SPACE.sub("", t)
            t = t.strip()
            if t != s:
                changed.add("whitespace")
                s = t
        return s

    def punctuate(self, s: str) -> str:
        """Full-width ，：；？！（）。 where a neighbour is CJK, ASCII where none is; URLs, e-mail
        addresses and code are set aside first (each as one placeholder character)."""
        shields: list[str] = []
        if "`" in s or "@" in s or "://" in s or "www." in s:   # substring tests: 20x faster than a regex
            def aside(m: re.Match) -> str:
                shields.append(m.group(0))
                return chr(0xF0000 + len(shields) - 1)
            s = _SHIELD.sub(aside, s)
        if "(" in s or "（" in s:
            s = _PARENS.sub(self._parens, s)
        if "，" in s or "：" in s or "；" in s or "？" in s or "！" in s:   # full width with no CJK around: ASCII
            s = _FULL_MARK_BEFORE_NON_CJK.sub(self._full_mark, s)
        if "," in s or ":" in s or ";" in s or "?" in s or "!" in s:
            s = _MARK.sub(self._mark, s)
        if "." in s:
            s = _PERIOD.sub(self._period, s)
        if shields:
            s = _PLACEHOLDER.sub(lambda m: shields[ord(m.group(0)) - 0xF0000], s)
        return s

    @staticmethod
    def _mark(m: re.Match) -> str:
        """An ASCII mark: full width next to CJK, or inside a Chinese sentence (每次20mg,2023年)
        unless it is part of a number (1,000 and 10:30 stay)."""
        s, (a, b) = m.string, m.span()
        if (a and _IS_CJK(s[a - 1])) or (b < len(s) and _IS_CJK(s[b])):
            return "".join(_FULL[c] for c in m.group(1))
        if m.group(0) in (",", ":") and a and b < len(s) and s[a - 1].isdigit() and s[b].isdigit():
            return m.group(0)
        if _in_chinese(s, a, b):
            return "".join(_FULL[c] for c in m.group(1))
        return m.group(0)

    @staticmethod
    def _full_mark(m: re.Match) -> str:
        """A full-width mark with no CJK right after it: ASCII only outside Chinese sentences."""
        s, (a, b) = m.string, m.span()
        if (a and _IS_CJK(s[a - 1])) or _in_chinese(s, a, b):
            return m.group(0)
        return _HALF[m.group(0)]

    @staticmethod
    def _period(m: re.Match) -> str:
        """A period after CJK, or after a unit in a Han clause (血糖7.8mmol/L.), ends a Chinese sentence."""
        s, a = m.string, m.start()
        if not a or s[a - 1] == ".":
            return "."
        before = s[a - 1]
        if _IS_CJK(before) or (_UNIT_END.match(before) and _HAN_TAIL.search(s, max(0, a - 12), a)):
            return "。"
        return "."

    @staticmethod
    def _parens(m: re.Match) -> str:
        s, (a, b) = m.string, m.span()
        before, after = s[a - 1] if a else "", s[b] if b < len(s) else ""
        inner, text = m.group(1), m.group(0)
        cjk = (before and _IS_CJK(before)) or re.search(_CJK, inner) or (
            after and _IS_CJK(after) and not (before and before.isascii() and before.isalnum()))
        if not cjk:
            return text.replace("（", "(").replace("）", ")")
        lead = " " if text.startswith(" ") and before.isascii() and before.isalnum() else ""
        trail = " " if text.endswith(" ") and after.isascii() and after.isalnum() else ""
        return lead + "（" + inner + "）" + trail

    # -- scaffolding and templates ----------------------------------------------------------

    def strip_user(self, s: str) -> str:
        t = _SPECIAL_TOKENS.sub("", s) if "<" in s or "[" in s else s
        m = self.user_lead.match(t)
        if m:
            t = t[m.end():]
            if self.section:
                t = self.section.sub("\n", t)
            t = self.trailing_answer.sub("", t)
        return t.strip() if t != s else s

    def strip_assistant(self, s: str) -> str:
        t = _SPECIAL_TOKENS.sub("", s) if "<" in s or "[" in s else s
        m = self.assistant_lead.match(t)
        if m:
            t = t[m.end():]
        return t.strip() if t != s else s

    def apply_template(self, prompt: str, task: str) -> str:
        parts = self.templates.get(task) or self.templates.get("default")
        if not parts or parts == ("", ""):
            return prompt
        pre, post = (p.replace("{task}", task).replace("{{", "{").replace("}}", "}") for p in parts)
        if prompt.startswith(pre) and prompt.endswith(post) and len(prompt) >= len(pre) + len(post):
            return prompt   # already in this template
        return pre + prompt + post

    # -- the step ---------------------------------------------------------------------------

    def process(self, rec: dict) -> dict | Drop:
        changed: set[str] = set()
        msgs = rec.get("messages") or []
        first_user = True
        for m in msgs:
            c = m["content"]
            if self.options["strip_scaffolding"] and m["role"] in ("user", "assistant"):
                t = self.strip_user(c) if m["role"] == "user" else self.strip_assistant(c)
                if t != c:
                    changed.add("scaffolding")
                    c = t
            c = self.clean(c, changed)
            if m["role"] == "user" and first_user:
                first_user = False
                t = self.apply_template(c, rec.get("task") or "")
                if t != c:
                    changed.add("template")
                    c = t
            m["content"] = c
        if isinstance(rec.get("text"), str) and not msgs:
            rec["text"] = self.clean(rec["text"], changed)
        if changed:
            rec["meta"]["normalized"] = sorted(changed)
            self.counts["records_changed"] += 1
            for kind in changed:
                self.counts[kind] += 1
        return rec
