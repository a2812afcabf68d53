"""What an expansion bought, measured with the saved tokenizers themselves: tokens per character
before and after on held-out text, the added tokens used most, domain-term coverage, and the
invariants (round trip, untouched ids on text without Chinese)."""
from __future__ import annotations

from collections import Counter

from .corpus import cjk_count

# Terms a medical expansion should cover; ``--terms`` adds the user's own.
DEFAULT_TERMS = ("胰岛素抵抗", "心肌梗死", "高血压", "糖尿病", "冠心病", "脑梗塞", "慢性乙型肝炎", "幽门螺杆菌",
                 "甲状腺功能亢进", "肝硬化", "脂肪肝", "转氨酶", "抗病毒治疗", "血糖", "心律失常", "支气管炎",
                 "癫痫", "痛风", "尿酸", "布洛芬")
# Text with no Chinese character: its ids must not change (English, code, other scripts, emoji).
PROBES = ("The patient was given 500 mg of metformin twice daily.",
          "def tokens_per_char(ids, text):\n    return len(ids) / max(1, len(text))  # ratio\n",
          "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
          "Emoji 😀👍🏽🇨🇳 and café, naïve, Ωμέγα, Привет, 한국어, ひらがな カタカナ.",
          "“Smart quotes” — dashes… and ½ ° € £ ¥ symbols\t\ttabs\n\nnewlines",
          "  leading spaces, trailing spaces   ", "{\"json\": [1, 2.5, null, true]}",
          "https://example.com/path?query=1&x=%E4%B8%AD")


def tokens_per_char(tok, texts: list[str]) -> dict:
    encs = tok(texts, add_special_tokens=False)["input_ids"] if texts else []
    chars = sum(len(t) for t in texts)
    n = sum(len(e) for e in encs)
    return {"texts": len(texts), "chars": chars, "chinese_chars": sum(cjk_count(t) for t in texts),
            "tokens": n, "tokens_per_char": round(n / chars, 4) if chars else None}


def measure(base_tok, new_tok, heldout: list[str], base_size: int, *, terms=DEFAULT_TERMS, top: int = 50) -> dict:
    before = tokens_per_char(base_tok, heldout)
    after = tokens_per_char(new_tok, heldout)
    new_ids = new_tok(heldout, add_special_tokens=False)["input_ids"] if heldout else []
    used = Counter(i for ids in new_ids for i in ids if i >= base_size)
    round_trip_bad = [t for t, ids in zip(heldout, new_ids) if new_tok.decode(ids) != t]
    probe_changed = [p for p in PROBES if base_tok.encode(p, add_special_tokens=False)
                     != new_tok.encode(p, add_special_tokens=False)]
    term_rows = []
    for term in terms:
        old_ids = base_tok.encode(term, add_special_tokens=False)
        ids = new_tok.encode(term, add_special_tokens=False)
        term_rows.append({"term": term, "tokens_before": len(old_ids), "tokens_after": len(ids),
                          "pieces_after": [new_tok.decode([i]) for i in ids], "single_token": len(ids) == 1})
    ratio = (after["tokens_per_char"] / before["tokens_per_char"]) if before["tokens_per_char"] else None
    return {
        "heldout": {"before": before, "after": after, "ratio": round(ratio, 4) if ratio else None},
        "top_added": [{"id": i, "token": new_tok.decode([i]), "count": n} for i, n in used.most_common(top)],
        "added_used_on_heldout": len(used),
        "terms": term_rows,
        "terms_single_token": sum(r["single_token"] for r in term_rows),
        "checks": {"round_trip_failures": len(round_trip_bad), "round_trip_examples": round_trip_bad[:3],
                   "probes": len(PROBES), "probes_changed": probe_changed},
    }


def summary(report: dict) -> str:
    """The readable summary written beside the report (vocab_report.md) and printed by the CLI."""
    h = report["heldout"]
    lines = [f"# Vocabulary expansion: {report['base']['name']} ({report['base']['type']})", "",
             f"- added {report['added']:,} tokens ({report['base']['vocab_size']:,} -> {report['vocab_size']:,}), "
             f"budget {report['settings']['size']:,}",
             f"- held-out ({h['before']['texts']:,} texts, {h['before']['chars']:,} chars): "
             f"{h['before']['tokens_per_char']} -> {h['after']['tokens_per_char']} tokens/char "
             f"(x{h['ratio']})",
             f"- checks: {report['checks']['round_trip_failures']} round-trip failures on held-out; "
             f"{len(report['checks']['probes_changed'])} of {report['checks']['probes']} non-Chinese probes changed ids; "
             f"{len(report.get('unreachable', []))} added tokens unreachable",
             f"- skipped pieces: {dict(report.get('skipped', {})) or 'none'}", "",
             "## Domain terms", "", "| term | tokens before | after | pieces after |", "|---|---|---|---|"]
    lines += [f"| {r['term']} | {r['tokens_before']} | {r['tokens_after']} | {' / '.join(r['pieces_after'])} |"
              for r in report["terms"]]
    lines += ["", "## Most used added tokens (held-out)", "",
              " ".join(f"{t['token']}({t['count']})" for t in report["top_added"][:40]), ""]
    return "\n".join(lines)
