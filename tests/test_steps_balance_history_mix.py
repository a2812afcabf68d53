"""The dataset-level steps: balance, history, mix (curate/steps/)."""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.config import ConfigError, load_config
from curate.schema import make_record, to_frame
from curate.step import Context, Drop, Table
from curate.steps.balance import Balance, max_share_cap
from curate.steps.history import History, split_turns
from curate.steps.mix import Mix
from curate.writing import write_parquet

MEDICAL = "medical_dialogue/internal_medicine_5000-6000.gb18030.csv"
MEDICAL_MAP = "user=ask,assistant=answer,task=department"


def table_of(tmp_path: Path, records: list[dict]) -> Table:
    part = tmp_path / "0000-000000.kept.parquet"
    write_parquet(part, to_frame(records))
    return Table([part])


def qa(rid, task, source="a.jsonl", q="问题", a="回答"):
    return make_record(rid, source, task=task, messages=[{"role": "user", "content": q},
                                                         {"role": "assistant", "content": a}])


def curate(*args) -> str:
    result = CliRunner().invoke(main, ["run", "--no-progress", "--workers", "1", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def medical_departments(shared_data) -> Counter:
    raw = (shared_data / MEDICAL).read_bytes().decode("gb18030")
    return Counter(r["department"] for r in csv.DictReader(io.StringIO(raw)))


# -- balance ----------------------------------------------------------------------------------

def test_balance_equalize_on_the_real_medical_csv(tmp_path, shared_data):
    depts = medical_departments(shared_data)
    assert len(depts) >= 10 and max(depts.values()) == 3121   # heavily imbalanced, as documented
    cfg = write_yaml(tmp_path / "c.yaml", f"""
inputs: [{{path: {shared_data / MEDICAL}, map: "{MEDICAL_MAP}"}}]
out: {tmp_path / 'out'}
steps: {{balance: {{equalize: true}}}}
""")
    curate(str(cfg), "--only", "balance")
    kept = pl.read_parquet(tmp_path / "out/curated.parquet")
    rejects = pl.read_parquet(tmp_path / "out/rejects.parquet")
    smallest = min(depts.values())
    assert Counter(kept["task"].to_list()) == {d: smallest for d in depts}
    assert rejects.height == sum(depts.values()) - smallest * len(depts)
    assert set(rejects["reason"].to_list()) == {"balance:over_cap"} and set(rejects["stage"].to_list()) == {"balance"}
    report = json.loads((tmp_path / "out/report.json").read_text(encoding="utf-8"))
    assert report["step_report"]["balance"]["before"] == dict(depts)
    assert report["step_report"]["balance"]["after"] == {d: smallest for d in depts}
    assert report["tasks"]["before"] == dict(depts) and report["tasks"]["after"] == {d: smallest for d in depts}


def test_balance_is_seeded(tmp_path):
    recs = [qa(f"r{i}", "big") for i in range(200)] + [qa(f"s{i}", "small") for i in range(20)]
    table = table_of(tmp_path, recs)

    def dropped(seed):
        return {rid for rid, _ in Balance({"equalize": True}, Context(seed=seed)).select(table)}
    assert dropped(1) == dropped(1)
    assert dropped(1) != dropped(2)
    assert len(dropped(1)) == 180 and all(rid.startswith("r") for rid in dropped(1))


def test_balance_counts_equalize_n_and_max_share(tmp_path):
    sizes = {"a": 500, "b": 300, "c": 120, "d": 40, "e": 10}
    recs = [qa(f"{t}{i}", t) for t, n in sizes.items() for i in range(n)]
    table = table_of(tmp_path, recs)

    def after(**opts):
        step = Balance(opts, Context(seed=0))
        gone = Counter(rid.rstrip("0123456789") for rid, d in step.select(table))
        return {t: n - gone[t] for t, n in sizes.items()}, step.report

    kept, rep = after(counts={"a": 100, "*": 60, "zz": 5})
    assert kept == {"a": 100, "b": 60, "c": 60, "d": 40, "e": 10}
    assert rep["unknown_tasks_in_counts"] == ["zz"]
    assert after(equalize=200)[0] == {"a": 200, "b": 200, "c": 120, "d": 40, "e": 10}
    kept, rep = after(max_share=0.3)
    total = sum(kept.values())
    assert max(kept.values()) <= 0.3 * total
    assert kept["d"] == 40 and kept["e"] == 10                  # small tasks keep everything
    assert max(kept.values()) + 1 > 0.3 * (total + 1)          # and the cap is the largest that holds
    kept, rep = after(max_share=0.1)                            # impossible with 5 tasks: equalized
    assert kept == dict.fromkeys(sizes, 10) and "cannot hold" in rep["rules"][-1]
    assert after()[0] == sizes                                  # no rule: no-op


def test_max_share_cap_solves_the_water_level():
    assert max_share_cap([100, 100], 0.5) == 100
    assert max_share_cap([1000, 10, 10], 0.5) == 20
    assert max_share_cap([10, 10, 10], 0.2) is None


def test_balance_leaves_general_records_to_mix(tmp_path):
    recs = ([qa(f"d{i}", "x", "dom.jsonl") for i in range(30)] + [qa(f"e{i}", "y", "dom.jsonl") for i in range(5)]
            + [qa(f"g{i}", "", "gen.jsonl") for i in range(50)])
    step = Balance({"equalize": True}, Context(general_sources=frozenset({"gen.jsonl"})))
    dropped = [rid for rid, _ in step.select(table_of(tmp_path, recs))]
    assert len(dropped) == 25 and all(r.startswith("d") for r in dropped)


@pytest.mark.parametrize("opts,needle", [({"equalize": "yes"}, "equalize"), ({"max_share": 2.0}, "max_share"),
                                         ({"counts": {"a": -1}}, "counts.a"), ({"key": "colour"}, "key")])
def test_balance_option_problems(opts, needle):
    problems = Balance.problems({**Balance.defaults, **opts})
    assert len(problems) == 1 and problems[0].startswith(needle)


# -- history ----------------------------------------------------------------------------------

def dialogue(turns: list[tuple[str, str]], system: str | None = "你是一名医生。") -> dict:
    msgs = [{"role": "system", "content": system}] if system else []
    for q, a in turns:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return make_record("dlg", "d.jsonl", messages=msgs)


TURNS = [("我头痛三天了，还发烧。", "体温多少度？"), ("三十八度五。", "有没有咳嗽？"), ("有一点咳嗽。", "建议查血常规。"),
         ("血常规在哪里查？", "门诊检验科。"), ("需要空腹吗？", "不需要空腹。")]


def chars(msgs):
    return sum(len(m["content"]) for m in msgs)


def test_history_keeps_system_and_most_recent_whole_turns():
    rec = dialogue(TURNS)
    system = rec["messages"][:1]
    last_two = rec["messages"][-4:]
    budget = chars(system) + chars(last_two) + 3   # the third-last turn does not fit
    out = History({"max_chars": budget}).process(rec)
    assert out["messages"] == system + last_two
    assert out["meta"]["history"] == {"dropped_turns": 3, "dropped_messages": 6, "kept_turns": 2,
                                      "dropped_chars": chars(rec["messages"][1:7]), "kept_first_turn": False}
    assert chars(out["messages"]) <= budget


def test_history_keep_first_turn_and_within_budget():
    rec = dialogue(TURNS)
    first, last = rec["messages"][1:3], rec["messages"][-2:]
    budget = chars(rec["messages"][:1] + first + last) + 2
    step = History({"max_chars": budget, "keep_first_turn": True})
    out = step.process(rec)
    assert out["messages"] == rec["messages"][:1] + first + last
    assert out["meta"]["history"]["kept_first_turn"] is True
    assert step.process(dialogue(TURNS[:1])) == dialogue(TURNS[:1])   # fits: untouched
    assert step.counts == {"trimmed": 1, "dropped_turns": 3, "within_budget": 1}


def test_history_drops_a_dialogue_whose_last_turn_alone_is_over_budget():
    rec = dialogue(TURNS[:2] + [("请详细解释" * 20, "好的" * 50)])
    res = History({"max_chars": 100}).process(rec)
    assert isinstance(res, Drop) and res.reason == "history:last_turn_over_budget"
    assert "budget 100 chars" in res.detail


def test_split_turns_groups_consecutive_user_messages():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}, {"role": "assistant", "content": "e"}]
    system, turns = split_turns(msgs)
    assert system == msgs[:1] and turns == [msgs[1:4], msgs[4:]]


def test_history_token_budget_with_the_real_tokenizer(model_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(model_dir))

    def tokens(msgs):
        return sum(len(tok(m["content"], add_special_tokens=False)["input_ids"]) for m in msgs)
    rec = dialogue(TURNS)
    budget = tokens(rec["messages"][:1] + rec["messages"][-6:])   # exactly three turns fit
    out = History({"max_tokens": budget, "tokenizer": str(model_dir)}).process(rec)
    assert out["messages"] == rec["messages"][:1] + rec["messages"][-6:]
    assert out["meta"]["history"]["dropped_tokens"] == tokens(rec["messages"][1:5])
    assert History({"max_tokens": budget - 1, "tokenizer": str(model_dir)}).process(rec)["meta"]["history"]["kept_turns"] == 2


def test_history_config_problems(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(inputs=[str(tmp_path)], overrides={"steps": {"history": {"max_tokens": 512}}})
    assert any("max_tokens needs tokenizer" in p for p in e.value.problems)
    with pytest.raises(ConfigError) as e:
        load_config(inputs=[str(tmp_path)], overrides={"steps": {"history": {"max_tokens": 9, "tokenizer": str(tmp_path / "nope")}}})
    assert any("is not a local folder" in p for p in e.value.problems)


# -- mix --------------------------------------------------------------------------------------

def mix_run(tmp_path, shared_data, ratio, extra="") -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    out = tmp_path / f"out-{ratio.replace(':', '_')}{extra and '-d'}"
    cfg = write_yaml(tmp_path / "mix.yaml", f"""
inputs:
  - {{path: {shared_data / MEDICAL}, map: "{MEDICAL_MAP}"}}
  - {{path: {shared_data / 'alpaca_en'}, role: general}}
out: {out}
steps: {{mix: {{ratio: "{ratio}" {extra}}}}}
""")
    curate(str(cfg), "--only", "mix")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return report, pl.read_parquet(out / "curated.parquet"), pl.read_parquet(out / "rejects.parquet")


def test_mix_ratio_on_real_domain_and_general_sets(tmp_path, shared_data):
    report, kept, rejects = mix_run(tmp_path, shared_data, "2:1")
    general = kept["source"].str.contains("alpaca_en")
    n_dom, n_gen = (~general).sum(), general.sum()
    n_gen_in = sum(s["read"] for p, s in report["sources"].items() if "alpaca_en" in p)
    assert n_dom == 7644 and n_gen == 7644 // 2
    assert rejects.height == n_gen_in - n_gen and set(rejects["reason"].to_list()) == {"mix:over_ratio"}
    assert report["step_report"]["mix"]["general_per_domain"] == {"target": 0.5, "achieved": 0.5}


def test_mix_general_short_keeps_all_or_downsamples_domain(tmp_path, shared_data):
    report, kept, _ = mix_run(tmp_path, shared_data, "1:5")
    n_gen = sum(s["read"] for p, s in report["sources"].items() if "alpaca_en" in p)
    assert kept.height == 7644 + n_gen and "short" in report["step_report"]["mix"]["note"]
    report, kept, rejects = mix_run(tmp_path, shared_data, "1:5", ", downsample_domain: true")
    assert kept.filter(~pl.col("source").str.contains("alpaca_en")).height == n_gen // 5
    assert set(rejects["reason"].to_list()) == {"mix:domain_over_ratio"}


def test_mix_is_seeded_and_checks_its_ratio(tmp_path):
    recs = [qa(f"d{i}", "", "dom.jsonl") for i in range(10)] + [qa(f"g{i}", "", "gen.jsonl") for i in range(100)]
    table = table_of(tmp_path, recs)

    def dropped(seed):
        return {rid for rid, _ in Mix({"ratio": "1:3"}, Context(seed=seed, general_sources=frozenset({"gen.jsonl"}))).select(table)}
    assert dropped(0) == dropped(0) != dropped(1) and len(dropped(0)) == 70
    assert Mix.problems({"ratio": 65})[0].endswith('quote it: ratio: "1:5"')   # YAML 1.1 read 1:5 as 65
    assert Mix.problems({"ratio": "one to five"}) and not Mix.problems({"ratio": "1:2.5"})
