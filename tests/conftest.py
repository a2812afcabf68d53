"""Shared test fixtures.  Tests that read ../shared/data skip cleanly where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SFTKIT_SHARED", ROOT.parent / "shared"))
# Model conversions and other caches stay inside the checkout (ignored by git), not in $HOME.
os.environ.setdefault("SFTKIT_CACHE", str(ROOT / ".cache" / "sftkit"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = SHARED / "data"
    if not d.is_dir():
        pytest.skip("../shared/data is not present")
    return d


@pytest.fixture(scope="session")
def shared_bench() -> Path:
    d = SHARED / "bench"
    if not d.is_dir():
        pytest.skip("../shared/bench is not present")
    return d


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The real SmolLM2-135M-Instruct as a transformers folder (converted once from the GGUF)."""
    from trainplug.models import default_model_dir
    return default_model_dir()


@pytest.fixture
def samples() -> Path:
    return ROOT / "samples"
