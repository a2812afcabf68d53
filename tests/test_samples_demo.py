"""The demo corpus end to end: `curate run samples/curate.yaml`, as `make demo` runs it."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.config import load_config

ROOT = Path(__file__).resolve().parent.parent
# Fake personal data planted in samples/raw (valid checksums), and look-alikes that are not PII.
PLANTED_PII = ["110105197503072319", "310104198805124028", "440305199208151635", "6222021000112230",
               "13812345678", "13912345678", "139-0000-1234", "010-62345678", "zhang.wei88@example.com",
               "doctor.li@example.com", "anna.k@example.com"]
NOT_PII = ["320106198001011231", "6222021000112231"]     # wrong ID check digit; fails Luhn


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    result = CliRunner().invoke(main, ["run", str(ROOT / "samples" / "curate.yaml"), "--out", str(out),
                                       "--workers", "1", "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def texts(df: pl.DataFrame) -> list[str]:
    out = []
    for row in df.iter_rows(named=True):
        out += [m["content"] for m in row["messages"] or []] + ([row["text"]] if row["text"] else [])
    return out


def test_demo_config_writes_demo_out_at_the_repository_root():
    cfg = load_config(str(ROOT / "samples" / "curate.yaml"))
    assert Path(cfg["out"]).resolve() == ROOT / "demo-out"          # where `make demo` says it is
    assert all(Path(i["path"]).is_file() for i in cfg["inputs"])


def test_every_record_accounted_for_per_source(demo):
    report = json.loads((demo / "report.json").read_text(encoding="utf-8"))
    curated, rejects = pl.read_parquet(demo / "curated.parquet"), pl.read_parquet(demo / "rejects.parquet")
    assert len(report["sources"]) == 5
    for path, s in report["sources"].items():
        assert s["read"] == s["kept"] + s["rejected"] > 0, path
        assert s["kept"] == curated.filter(pl.col("source") == path).height
        assert s["rejected"] == rejects.filter(pl.col("source") == path).height
    csv_source = next(s for p, s in report["sources"].items() if p.endswith("medical_qa.gb18030.csv"))
    assert csv_source["read"] == 89                       # every row of the GB18030 CSV
    assert report["totals"]["read"] == 206


def test_malformed_line_rejected_with_file_and_line(demo):
    rejects = pl.read_parquet(demo / "rejects.parquet")
    bad = rejects.filter(pl.col("stage") == "read")
    assert bad.height == 1
    assert bad["reason"][0] == "malformed:json" and "consultations.jsonl:10" in bad["detail"][0]


def test_text_steps_did_their_work(demo):
    rejects = pl.read_parquet(demo / "rejects.parquet")
    reasons = dict(rejects.group_by("reason").len().iter_rows())
    assert reasons["language:ja"] == 1 and reasons["language:ko"] == 1
    assert reasons["unsafe:self_harm"] == 1 and reasons["quality:empty_answer"] == 2
    assert reasons["quality:repetition"] == 1 and reasons["quality:answer_equals_question"] == 1
    curated = pl.read_parquet(demo / "curated.parquet")
    kept = texts(curated)
    blob = "\n".join(kept)
    assert "家属该怎么办" in blob                                     # the help-seeking question stays
    assert "心血管科" in set(curated["task"]) and "血压150/95mmHg" in blob   # GB18030 decoded
    assert not any("胃痛,反酸" in t or "７.８" in t for t in kept)      # normalized
    assert "最近吃完饭就反酸，胃也痛，血糖7.8mmol/L，是不是胃病？" in blob
    assert set(curated["lang"]) == {"zh", "en"}


def test_pii_gone_from_curated_output(demo):
    # Everything that passed the safety step: the curated set plus what later steps (dedup,
    # balance, mix) set aside, so the check does not depend on which records those keep.
    rejects = pl.read_parquet(demo / "rejects.parquet")
    after_safety = rejects.filter(pl.col("stage").is_in(["quality", "history", "dedup", "balance", "mix"]))
    curated = pl.read_parquet(demo / "curated.parquet")
    blob = "\n".join(texts(curated) + texts(after_safety))
    assert not any(pii in t for t in texts(curated) for pii in PLANTED_PII)
    for pii in PLANTED_PII:
        assert pii not in blob, pii
    for placeholder in ("<PHONE>", "<ID_CARD>", "<EMAIL>", "<BANK_CARD>"):
        assert placeholder in blob
    for look_alike in NOT_PII:
        assert look_alike in blob, look_alike
    assert "每日1次，每次20mg，2023年10月1日" in blob                     # dosage and date untouched


def test_fillers_counted_in_report(demo):
    report = json.loads((demo / "report.json").read_text(encoding="utf-8"))
    fillers = report["step_counts"]["fillers"]
    assert fillers["嗯"] >= 5 and fillers["那个"] >= 3 and fillers["um"] >= 1 and fillers["you know"] >= 1
    assert fillers["这个 (repeat)"] == 1 and fillers["然后呢"] == 1
    blob = "\n".join(texts(pl.read_parquet(demo / "curated.parquet")))
    assert "呃逆停不下来，那个药吃了也没用" in blob                    # hiccups and "that medicine" stay
    assert "嗯，那个" not in blob
