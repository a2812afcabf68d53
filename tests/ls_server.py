"""Fixtures that run a real Label Studio server (import them into a test module).

``ls_template``: migrated once (GUIDE section 1: the first start runs migrations, ~1 min on an
idle machine, minutes on a busy one), then kept under .cache/label-studio/ keyed by the Label
Studio version, so later test sessions on the same checkout reuse it (CI, a fresh clone, makes
it once).  ``label_studio``: a copy of the template started on a free port of 127.0.0.1 for one
test module (~6 s), stopped at teardown.  The Label Studio venv comes from `make review-deps`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from evalkit.review.localserver import TEMPLATE_INFO, LocalLabelStudio, label_studio_python, make_template

ROOT = Path(__file__).resolve().parent.parent


def _ls_version() -> str:
    py = label_studio_python()
    out = subprocess.run([str(py), "-c", "from importlib.metadata import version; print(version('label-studio'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="session")
def ls_template() -> Path:
    try:
        version = _ls_version()
    except RuntimeError as e:           # no .venv-ls: the suite needs `make review-deps` first
        pytest.fail(str(e))
    cache = ROOT / ".cache" / "label-studio"
    template = cache / f"template-{version}"
    if not (template / TEMPLATE_INFO).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="template-", dir=cache))
        make_template(tmp)
        shutil.rmtree(template, ignore_errors=True)
        os.replace(tmp, template)
    return template


@pytest.fixture(scope="module")
def label_studio(ls_template, tmp_path_factory):
    server = LocalLabelStudio.from_template(ls_template, tmp_path_factory.mktemp("ls") / "data")
    server.start()
    yield server
    server.stop()


def user_tokens(server: LocalLabelStudio) -> list[tuple[str, str]]:
    """[(email, token)] of the server's two users, owner first."""
    info = json.loads((server.data_dir / TEMPLATE_INFO).read_text())
    return list(info["users"].items())
