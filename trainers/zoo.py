"""The model zoo as ``python -m trainers list`` shows it: one row per model and fusion method.

Parameters are counted by building each model at its default config on the
meta device (no memory, no initialisation), so a new registry entry shows up
without any change here. The building takes a fraction of a second; importing
what it needs (torch, torchvision, pytorchvideo) takes seconds. The rows are a
function of this package's source and of those libraries' versions only, so
they are kept in a file named by a hash of both, under
``$XDG_CACHE_HOME/emoconsole/zoo/`` (``~/.cache`` by default): a later ``list``
reads it without importing torch, and any change to a model, a config default
or a library version names another file and counts afresh. Rows with a model
that failed to build are not kept, so the warning shows every time.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import trainers

# The libraries whose models the zoo builds: their versions are part of the cache key.
MODEL_LIBRARIES = ("torch", "torchvision", "pytorchvideo")


def zoo_rows() -> list[dict[str, Any]]:
    """The zoo's rows, from the cache when this code and these libraries counted them."""
    path = cache_path()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    rows = build_zoo_rows()
    if all(row["params"] is not None for row in rows):
        _write_cache(path, rows)
    return rows


def build_zoo_rows() -> list[dict[str, Any]]:
    """One row per registered model and per fusion method, sorted by name, counted now."""
    from trainers.fusion import FUSERS
    from trainers.registry import get_entry, list_models

    rows = []
    for name in list_models():
        entry = get_entry(name)
        cfg = entry.default_config()
        classes = entry.default_num_classes(cfg)
        try:
            params: int | None = entry.count_params(classes)
        except Exception as exc:  # one broken builder must not hide the rest of the zoo
            print(f"warning: cannot build {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            params = None
        rows.append(
            {
                "name": name,
                "kind": "model",
                "params": params,
                "classes": classes,
                "inputs": entry.input_spec(cfg),
                "description": entry.description,
                "seed_note": entry.seed_note,
            }
        )
    for fuser in FUSERS.values():
        rows.append(
            {
                "name": fuser.name,
                "kind": "fusion",
                "params": fuser.params,  # values fitted on val; nothing is trained
                "classes": None,
                "inputs": fuser.inputs,
                "description": fuser.description,
                "seed_note": fuser.seed_note,
            }
        )
    return sorted(rows, key=lambda row: row["name"])


def cache_key() -> str:
    """A hash of every source file of this package, the Python version and the model
    libraries' versions: what the rows depend on."""
    from importlib import metadata

    digest = hashlib.sha256(sys.version.encode())
    for lib in MODEL_LIBRARIES:
        try:
            version = metadata.version(lib)
        except metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"\0{lib}={version}".encode())
    root = Path(trainers.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(f"\0{path.relative_to(root).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emoconsole" / "zoo" / f"{cache_key()}.json"


def _write_cache(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically, replacing the counts of older code; a cache that cannot be written
    (read-only home) only costs the next ``list`` its imports."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(rows), encoding="utf-8")
        os.replace(tmp, path)
        for old in path.parent.glob("*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass
