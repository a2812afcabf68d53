"""`curate run`: a finished run is a no-op; a killed run leaves nothing that looks complete and resumes."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import main

ROOT = Path(__file__).resolve().parent.parent
MEDICAL = "medical_dialogue/internal_medicine_5000-6000.gb18030.csv"
# Steps that keep, change and drop records, so the comparison means something; the seeded
# balance makes the result depend on the seed being carried through a resume.
STEPS = "normalize,quality,balance,history"
ROWS = 3000   # of the real GB18030 medical CSV: enough for ~60 batches of 50


def medical_subset(tmp_path: Path, shared_data: Path) -> Path:
    path = tmp_path / "medical.gb18030.csv"
    if not path.exists():
        lines = (shared_data / MEDICAL).read_bytes().decode("gb18030").splitlines(keepends=True)
        path.write_bytes("".join(lines[:ROWS + 1]).encode("gb18030"))
    return path


def config(tmp_path: Path, shared_data: Path, out: Path, batch_size: int = 1000) -> Path:
    cfg = tmp_path / f"{out.name}.yaml"
    cfg.write_text(f"""
inputs: [{{path: {medical_subset(tmp_path, shared_data)}, map: "user=ask,assistant=answer,task=department"}}]
out: {out}
seed: 7
batch_size: {batch_size}
steps:
  balance: {{max_share: 0.2}}
  history: {{max_chars: 400}}
""", encoding="utf-8")
    return cfg


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def frame(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path).sort("id")


def test_rerunning_a_finished_run_does_nothing(tmp_path, shared_data):
    out = tmp_path / "out"
    cfg = config(tmp_path, shared_data, out)
    first = CliRunner().invoke(main, ["run", str(cfg), "--only", STEPS, "--no-progress", "--workers", "1"])
    assert first.exit_code == 0, first.output
    before = mtimes(out)
    assert set(before) == {"curated.parquet", "rejects.parquet", "report.json", "report.html", "manifest.json"}
    time.sleep(0.05)
    again = CliRunner().invoke(main, ["run", str(cfg), "--only", STEPS, "--no-progress", "--workers", "2"])
    assert again.exit_code == 0 and "up to date" in again.output
    assert mtimes(out) == before   # workers do not change the result, so they do not make it stale
    changed = CliRunner().invoke(main, ["run", str(cfg), "--only", STEPS, "--no-progress", "--workers", "1", "--seed", "8"])
    assert changed.exit_code == 0 and "up to date" not in changed.output
    assert mtimes(out)["manifest.json"] != before["manifest.json"]


@pytest.mark.slow   # three runs, two of them fresh processes with workers: ~20 s idle, 50 s on a busy machine
def test_killed_run_leaves_nothing_complete_and_resumes(tmp_path, shared_data):
    out = tmp_path / "killed"
    cfg = config(tmp_path, shared_data, out, batch_size=50)   # 60 batches: killed mid-way
    cmd = [sys.executable, "-m", "curate.cli", "run", str(cfg), "--only", STEPS, "--no-progress", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while len(list(out.glob(".work/*/00-record-*/*.counts.json"))) < 10:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "the run never wrote 10 batches"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)   # the runner and its workers, as a crash would
    proc.wait()
    proc.stderr.close()
    assert not (out / "manifest.json").exists() and not (out / "curated.parquet").exists()
    assert not list(out.glob("*.parquet")) and not list(out.glob("report.*"))
    finished = {p: p.stat().st_mtime_ns for p in out.glob(".work/*/00-record-*/*.counts.json")}
    assert 10 <= len(finished) < ROWS // 50

    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    skipped = re.search(r"resume: segment 00-record-\S+: skipped (\d+) batches", resumed.stderr)
    assert skipped and int(skipped.group(1)) == len(finished), resumed.stderr
    assert (out / "manifest.json").exists() and not (out / ".work").exists()

    whole = tmp_path / "whole"
    ref = CliRunner().invoke(main, ["run", str(config(tmp_path, shared_data, whole, batch_size=50)),
                                    "--only", STEPS, "--no-progress", "--workers", "1"])
    assert ref.exit_code == 0, ref.output
    assert frame(out / "curated.parquet").equals(frame(whole / "curated.parquet"))
    assert frame(out / "rejects.parquet").equals(frame(whole / "rejects.parquet"))
    assert frame(out / "rejects.parquet")["reason"].value_counts().height >= 3   # quality, balance, history drops


def test_a_run_made_by_other_code_is_not_up_to_date(tmp_path, shared_data, monkeypatch):
    from curate import pipeline
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    first = pipeline.source_digest(pkg)
    (pkg / "notes.txt").write_text("not code")
    assert pipeline.source_digest(pkg) == first                 # only Python and C sources count
    (pkg / "sub" / "b.py").write_text("y = 3\n")
    assert pipeline.source_digest(pkg) != first                 # an edit in an editable install
    second = pipeline.source_digest(pkg)
    (pkg / "sub" / "k.c").write_text("int x;\n")
    assert pipeline.source_digest(pkg) != second                # the compiled kernels' source too
    out = tmp_path / "out"
    cfg = config(tmp_path, shared_data, out)
    args = ["run", str(cfg), "--only", STEPS, "--no-progress", "--workers", "1"]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["versions"]["curate_code"] == \
        pipeline.source_digest(Path(pipeline.__file__).parent)
    # the curate sources cannot be edited under a test: their digest is what changes
    monkeypatch.setattr(pipeline, "source_digest", lambda root: "0" * 16)
    rerun = CliRunner().invoke(main, args)
    assert rerun.exit_code == 0 and "up to date" not in rerun.output
