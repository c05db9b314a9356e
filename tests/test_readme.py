"""The README's promise to a newcomer: exactly two set-up commands that exist and work
(one starts the app, one runs the tests), and CI running that very test command."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Set-up\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, "README.md has no '## Set-up' section"
    body = m.group(1)
    fenced = re.findall(r"```[a-z]*\n(.*?)```", body, flags=re.S)
    lines = [ln for block in fenced for ln in block.splitlines()] if fenced else \
        [ln[4:] for ln in body.splitlines() if ln.startswith("    ")]
    return [ln.strip().removeprefix("$ ") for ln in lines if ln.strip()]


def test_readme_has_two_setup_commands_that_exist():
    cmds = setup_commands()
    assert len(cmds) == 2, cmds
    app_cmd, test_cmd = cmds
    assert "streamlit run app.py" in app_cmd and (ROOT / "app.py").is_file()
    assert "pytest" in test_cmd
    for cmd in cmds:
        for part in cmd.split("&&"):
            argv = shlex.split(part)
            if argv[:2] == ["pip", "install"] and "-r" in argv:
                assert (ROOT / argv[argv.index("-r") + 1]).is_file()
    pinned = (ROOT / "requirements.txt").read_text()
    for pkg in ("torch==", "torchvision==", "streamlit==", "streamlit-drawable-canvas=="):
        assert pkg in pinned, f"requirements.txt does not pin {pkg}"


def test_ci_runs_the_readme_test_command():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    last = [ln for ln in lines if ln and not ln.startswith("#")][-1]
    assert last == setup_commands()[1]


def test_readme_shows_the_app():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    shots = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert shots, "the README shows no screenshot"
    for s in shots:
        assert (ROOT / s).is_file(), f"README links a missing screenshot: {s}"
