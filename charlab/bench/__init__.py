"""Benchmarks behind `python -m charlab bench NAME`.

Each module here defines `add_arguments(parser)` (optional), `run(args) -> dict` and a
docstring whose first line is its help. `run` measures charlab against the obvious
alternative in the same process, since absolute times on shared machines are noisy, and
returns a JSON-able dict; `--json` prints it, otherwise it is printed as a table.
"""
import os
from pathlib import Path

# The real Chars74K zips (trainPart1.zip, testPart1.zip): $CHARLAB_SHARED_DATA/chars74k_hnd, else
# ../shared/data/chars74k_hnd beside the repository (as tests/conftest.py finds them).
CHARS74K = Path(os.environ.get("CHARLAB_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data") \
    / "chars74k_hnd"
