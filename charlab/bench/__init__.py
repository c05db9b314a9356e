"""Benchmarks behind `python -m charlab bench NAME`.

Each module here defines `add_arguments(parser)` (optional), `run(args) -> dict` and a
docstring whose first line is its help. `run` measures charlab against the obvious
alternative in the same process, since absolute times on shared machines are noisy, and
returns a JSON-able dict; `--json` prints it, otherwise it is printed as a table.
"""
