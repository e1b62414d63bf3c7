"""Dependency direction, checked: the console never loads torch at start-up,
and the parts shipped to hosts never load the console's libraries."""

from __future__ import annotations

import json
import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_console_cli_does_not_import_torch():
    mods = loaded_after("import emoconsole.cli")
    assert "torch" not in mods
    assert "paramiko" not in mods and "boto3" not in mods


def test_run_directory_readers_are_stdlib_only():
    mods = loaded_after("import trainers.events, trainers.rundir, trainers.runlog")
    assert not {"torch", "numpy", "textual", "typer"} & mods
    # The events reducer and hostctl run on hosts with nothing but Python installed.
    mods = loaded_after("import trainers.runlog, remote.hostctl") - loaded_after("pass")
    outside = {m.split(".")[0] for m in mods} - set(sys.stdlib_module_names)
    assert outside <= {"trainers", "remote"}, outside


def test_trainers_engine_never_imports_the_console():
    mods = loaded_after("import trainers.engine.trainer, trainers.models, trainers.cli")
    assert not {"textual", "typer", "paramiko", "boto3", "rich"} & mods


def test_help_is_fast_and_torch_free():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from emoconsole.cli import app; "
            "sys.argv=['emoconsole','--help']\ntry:\n app()\nexcept SystemExit: pass\n"
            "import json; print(json.dumps('torch' in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) is False
