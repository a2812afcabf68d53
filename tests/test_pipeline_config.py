"""`curate run` configuration: bad configs refused before work, --only/--skip, flags over the config."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from curate.cli import main

QA = [{"question": "感冒了可以喝冰水吗？", "answer": "感冒期间建议喝温水，少喝冰水，注意休息。", "task": "呼吸科"},
      {"question": "How long should I rest after a sprained ankle?",
       "answer": "Usually one to two weeks of rest, ice and elevation; see a doctor if it does not improve.", "task": "骨科"}]


def write_inputs(folder: Path) -> Path:
    path = folder / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in QA) + "\n", encoding="utf-8")
    return path


def invoke(*args):
    return CliRunner().invoke(main, ["run", "--no-progress", "--workers", "1", *args])


def test_bad_config_lists_every_problem_before_any_work(tmp_path):
    write_inputs(tmp_path)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("""
inputs:
  - {path: qa.jsonl, role: generic}
  - {path: missing/*.jsonl}
  - {path: qa.jsonl, shape: alpacca, colour: red}
out: out
seed: "seven"
steps:
  dedupe: {}
  balance: {equalize: "yes", max_share: "half"}
  history: {max_chars: 100.5, keep_first: true}
  mix: {ratio: 1:5}
""", encoding="utf-8")
    result = invoke(str(cfg))
    assert result.exit_code == 1
    msg = result.output
    expected = ["inputs[0].role: 'generic' is not domain or general",
                "inputs[1]: input", "matches no readable file",
                "inputs[2].colour: unknown key", "inputs[2].shape: 'alpacca' is not one of",
                "seed: expected a non-negative integer, got 'seven'",
                "steps: unknown step 'dedupe'",
                "steps.balance.max_share: expected a number, got 'half'",
                "steps.balance: equalize: expected true/false or a positive integer, got 'yes'",
                "steps.history.max_chars: expected an integer, got 100.5",
                "steps.history.keep_first: unknown option",
                'steps.mix: ratio: YAML read an unquoted ratio as the base-60 number 65']
    for text in expected:
        assert text in msg, text
    assert "the config has 11 problems" in msg
    assert not (tmp_path / "out").exists()   # refused before any work: no output folder
    assert "Traceback" not in msg


def test_config_file_errors(tmp_path):
    assert "does not exist" in invoke(str(tmp_path / "nope.yaml")).output
    (tmp_path / "bad.yaml").write_text("inputs: [unclosed\n", encoding="utf-8")
    assert "not valid YAML" in invoke(str(tmp_path / "bad.yaml")).output
    empty = invoke("--out", str(tmp_path / "o"))
    assert empty.exit_code == 1 and "no input given" in empty.output and not (tmp_path / "o").exists()
    bad_map = invoke("--input", str(write_inputs(tmp_path)), "--map", "usr=ask,assistant", "--only", "balanse")
    assert "bad --map entries" in bad_map.output and "--only: unknown step 'balanse'" in bad_map.output


def funnel(out: Path) -> list[str]:
    return [f["stage"] for f in json.loads((out / "report.json").read_text(encoding="utf-8"))["funnel"]]


def test_only_and_skip(tmp_path):
    src = write_inputs(tmp_path)
    assert invoke("--input", str(src), "--out", str(tmp_path / "a"), "--only", "quality,balance").exit_code == 0
    assert funnel(tmp_path / "a") == ["read", "quality", "balance"]
    assert invoke("--input", str(src), "--out", str(tmp_path / "b"), "--skip", "language,dedup,mix").exit_code == 0
    assert funnel(tmp_path / "b") == ["read", "normalize", "fillers", "safety", "quality", "history", "balance"]
    cfg = tmp_path / "off.yaml"
    cfg.write_text(f"inputs: [{src}]\nout: {tmp_path / 'c'}\nsteps: {{dedup: false, safety: false}}\n", encoding="utf-8")
    assert invoke(str(cfg), "--skip", "mix").exit_code == 0
    assert funnel(tmp_path / "c") == ["read", "normalize", "language", "fillers", "quality", "history", "balance"]


def test_flags_override_the_config(tmp_path):
    src = write_inputs(tmp_path)
    other = tmp_path / "other.csv"
    other.write_text("ask,reply,dept\n头痛怎么办？,注意休息，必要时就医。,神经科\n", encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
inputs: [{src}]
out: {tmp_path / 'from-config'}
seed: 1
steps: {{balance: {{equalize: true}}}}
""", encoding="utf-8")
    result = invoke(str(cfg), "--input", str(other), "--map", "user=ask,assistant=reply,task=dept",
                    "--out", str(tmp_path / "from-flag"), "--seed", "5", "--only", "balance", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "from-config").exists()
    manifest = json.loads((tmp_path / "from-flag/manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 5 and manifest["config"]["steps"] == {"balance": {
        "key": "task", "equalize": True, "max_share": 0.0, "counts": {}, "include_general": False}}
    assert [i["path"] for i in manifest["inputs"]] == [str(other)]
    rows = [json.loads(line) for line in (tmp_path / "from-flag/curated.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[0]["task"] == "神经科" and rows[0]["messages"][1]["content"] == "注意休息，必要时就医。"
    assert set(manifest["outputs"]) == {"curated.jsonl", "rejects.parquet", "report.json", "report.html"}
