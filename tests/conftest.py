"""Shared fixtures. Real handwriting lives in ../shared/data (never copied into the repo);
tests that need it skip with a reason where it is absent (a user's machine). CI always has it,
so under CI=true a missing folder fails those tests instead: a skip there would hide a broken setup."""
from __future__ import annotations

import os
from pathlib import Path

# As in `python -m charlab`: OpenMP threads that spin-wait stall when the 2 cores are shared.
os.environ.setdefault("GOMP_SPINCOUNT", "0")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CHARLAB_SHARED_DATA", ROOT.parent / "shared" / "data"))
CHARS74K = SHARED_DATA / "chars74k_hnd"


@pytest.fixture(scope="session")
def chars74k_dir() -> Path:
    """Folder with trainPart1.zip and testPart1.zip (Chars74K EnglishHnd)."""
    if not (CHARS74K / "trainPart1.zip").exists():
        missing(f"real Chars74K data not found at {CHARS74K} (set CHARLAB_SHARED_DATA)")
    return CHARS74K


def missing(reason: str) -> None:
    """Skip a test whose real data or tool is absent; under CI (CI=true) fail it instead."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} -- CI must have it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chars74k_train_zip(chars74k_dir: Path) -> Path:
    return chars74k_dir / "trainPart1.zip"


@pytest.fixture(scope="session")
def chars74k_test_zip(chars74k_dir: Path) -> Path:
    return chars74k_dir / "testPart1.zip"
