"""Dependency direction, checked: the console never loads torch at start-up,
and the parts shipped to hosts never load the console's libraries."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path


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


ONHOST = (
    "remote.onhost.watcher",
    "remote.onhost.hostctl",
    "remote.onhost.manifest",
    "remote.onhost.queue",
)
ONHOST_ALLOWED = {
    "trainers",
    "trainers.events",
    "trainers.rundir",
    "trainers.runlog",
    "remote",
    "psutil",
}


def test_onhost_modules_import_the_standard_library_only():
    """What runs on a training host (started with ``python -m`` there, where the
    console's libraries and torch may be missing) imports the standard library,
    the stdlib-only run-directory modules (events, rundir, runlog) and, when
    installed, psutil: each
    module in a fresh interpreter, then again with psutil made unimportable."""
    baseline = loaded_after("pass")
    for module in (*ONHOST, "remote.watcher", "remote.hostctl", "remote.manifest"):
        mods = loaded_after(f"import {module}")
        extra = {
            m
            for m in mods - baseline
            if m.split(".")[0] not in sys.stdlib_module_names
            and not m.startswith("remote.onhost")
            and m.split(".")[0] != "psutil"
            and m not in ONHOST_ALLOWED
            and m not in {"remote.watcher", "remote.hostctl", "remote.manifest"}
        }
        assert not extra, f"{module} imported {sorted(extra)}"
        without = loaded_after(f"sys.modules['psutil'] = None\nimport {module}")
        assert module in without


def _module_imports() -> dict[str, set[str]]:
    """Every project module and the project modules it imports, at any depth in
    its code: a function-level import is an edge too, since hiding a cycle
    behind one leaves the cycle in place."""
    root = Path(__file__).resolve().parent.parent
    files: dict[str, Path] = {}
    for package in ("remote", "trainers", "emoconsole"):
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join(parts + ([base] if base else []))
                # ``from pkg import mod`` depends on pkg.mod; ``from pkg import name``
                # on pkg's __init__ (which may in turn import this module: a cycle).
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles():
    graph = _module_imports()
    assert "remote.onhost.watcher" in graph and "trainers.engine.trainer" in graph
    assert import_cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
