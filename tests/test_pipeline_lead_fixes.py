"""Runner behaviours added after the first round: a step that raises rejects that record (the run
goes on), outputs are readable by others, and file options in a config resolve against it."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from curate import pipeline
from curate.cli import main
from curate.config import load_config
from curate.step import RecordStep


class RaisesOnDigits(RecordStep):
    """A step with a bug: it crashes on any record whose question holds a digit."""
    name = "buggy"

    def process(self, rec):
        if any(ch.isdigit() for ch in rec["messages"][0]["content"]):
            raise ValueError("cannot handle digits")
        return rec


def test_a_step_that_raises_rejects_only_that_record(tmp_path, monkeypatch):
    src = tmp_path / "qa.jsonl"
    rows = [{"question": "高血压怎么办？", "answer": "低盐饮食，规律服药。"},
            {"question": "血糖7.8正常吗？", "answer": "空腹7.8偏高，建议复查。"},
            {"question": "感冒了吃什么？", "answer": "多喝水，注意休息。"}]
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    monkeypatch.setitem(pipeline.STEP_CLASSES, "normalize", RaisesOnDigits)
    cfg = load_config(None, inputs=[str(src)], out=str(tmp_path / "out"), only="normalize",
                      overrides={"workers": 1})
    result = pipeline.run(cfg, progress=False, log=lambda m: None)
    assert result.report["sources"][str(src)] == {"role": "domain", "read": 3, "kept": 2, "rejected": 1}
    rej = pl.read_parquet(tmp_path / "out" / "rejects.parquet")
    assert rej["reason"].to_list() == ["error:ValueError"]
    assert "cannot handle digits" in rej["detail"][0]
    assert "血糖7.8" in rej["messages"][0][0]["content"]


def test_outputs_are_readable_by_others_and_config_paths_are_normalized(tmp_path):
    root = Path(__file__).resolve().parent.parent
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "data.jsonl").write_text(json.dumps({"instruction": "什么是高血压？", "output": "血压持续高于140/90mmHg。"},
                                                   ensure_ascii=False) + "\n", encoding="utf-8")
    lex = root / "curate" / "steps" / "lexicons" / "unsafe.yaml"
    (cfg_dir / "lex.yaml").write_text(lex.read_text(encoding="utf-8"), encoding="utf-8")
    (cfg_dir / "run.yaml").write_text("out: ../out\ninputs: [data.jsonl]\nsteps:\n  safety: {lexicon: lex.yaml}\n",
                                      encoding="utf-8")
    old = os.getcwd()
    try:
        os.chdir(root)   # the config's relative paths must not depend on where curate is run
        cfg = load_config(str(cfg_dir / "run.yaml"))
        assert cfg["out"] == os.path.normpath(tmp_path / "out") and ".." not in cfg["out"]
        assert cfg["steps"]["safety"]["lexicon"] == str(cfg_dir / "lex.yaml")
        res = CliRunner().invoke(main, ["run", str(cfg_dir / "run.yaml"), "--no-progress"])
    finally:
        os.chdir(old)
    assert res.exit_code == 0, res.output
    umask = os.umask(0)
    os.umask(umask)
    for name in ("curated.parquet", "rejects.parquet", "report.json", "manifest.json"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o666 & ~umask, name


def test_two_runs_in_one_process_use_their_own_step_options(tmp_path):
    """Worker-side steps are cached per process; with workers=1 two runs share the process, and the
    second run's options must apply (the cache once went by segment name alone)."""
    src = tmp_path / "qa.jsonl"
    rows = [{"question": "高血压怎么办？", "answer": "低盐饮食。"}, {"question": "感冒了吃什么？", "answer": "多喝水，注意休息，必要时就医。"}]
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    kept = []
    for i, min_chars in enumerate((1, 10)):
        cfg = load_config(None, inputs=[str(src)], out=str(tmp_path / f"out{i}"), only="quality",
                          overrides={"workers": 1, "steps": {"quality": {"min_answer_chars": min_chars}}})
        kept.append(pipeline.run(cfg, progress=False, log=lambda m: None).report["totals"]["kept"])
    assert kept == [2, 1]
