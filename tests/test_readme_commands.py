"""The README's two set-up commands: CI runs the second verbatim, and each makes its own environment."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", setup, re.S)]


def test_ci_runs_the_readmes_second_command_verbatim():
    commands = _setup_commands()
    assert len(commands) == 2, commands
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_each_readme_command_makes_its_own_environment():
    first, second = (re.search(r"python3 -m venv (\S+)", c).group(1) for c in _setup_commands())
    assert first != second   # the second starts fresh even after the first was run in the same clone
    ignored = (ROOT / ".gitignore").read_text().split()
    assert f"{first}/" in ignored and f"{second}/" in ignored
