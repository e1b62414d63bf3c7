"""What a new user meets first: `--help`, the runs table, run ids typed short,
a run that is not there, a dropped connection."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from emoconsole.cli import app

runner = CliRunner()


def test_help_lists_commands_in_the_order_a_user_meets_them_and_no_bool():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    commands = result.output.split("Commands:")[1]
    names = re.findall(r"^  (\w+)\s", commands, flags=re.MULTILINE)
    order = ["demo", "deploy", "runs", "monitor", "watch", "stop", "download", "hosts"]
    assert names[: len(order)] == order
    assert "version" in names[len(order) :]


def test_subcommand_help_shows_no_bool_for_flags():
    for args in (["hosts", "--help"], ["deploy", "--help"], ["demo", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, args


def test_help_loads_no_rich():
    """Typer's rich help panels cost 0.27 s of imports (rich.markdown, pygments, ...)."""
    import json
    import subprocess
    import sys

    code = (
        "import sys, json; from emoconsole.cli import app; sys.argv=['emoconsole','--help']\n"
        "try:\n app()\nexcept SystemExit: pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'rich')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
