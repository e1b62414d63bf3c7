"""`python -m trainers list`: every model with its parameter count and inputs, and the
fusion methods that train nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import trainers_cmd
from trainers.cli import main
from trainers.fusion import FUSERS
from trainers.registry import describe_inputs, get_entry, list_models
from trainers.zoo import cache_path


@pytest.fixture(scope="module")
def zoo_cache(tmp_path_factory) -> Path:
    """An XDG_CACHE_HOME of this module's own: counted here, not read from ~/.cache."""
    return tmp_path_factory.mktemp("xdg-cache")


def list_json(cache: Path, probe: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    if probe:  # the same command, then whether it imported torch
        code = (
            "import sys; from trainers.cli import main; main(['list', '--json']); "
            "print('torch' in sys.modules, file=sys.stderr)"
        )
        cmd = [sys.executable, "-c", code]
    else:
        cmd = trainers_cmd("list", "--json")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def listed(zoo_cache) -> dict[str, dict]:
    proc = list_json(zoo_cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    return {row["name"]: row for row in rows}


def test_a_second_list_reads_the_counts_without_torch(listed, zoo_cache, monkeypatch):
    (kept,) = (zoo_cache / "emoconsole" / "zoo").iterdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(zoo_cache))
    assert kept == cache_path()  # named by this code's and the libraries' hash
    proc = list_json(zoo_cache, probe=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {row["name"]: row for row in json.loads(proc.stdout)} == listed
    assert proc.stderr.strip().splitlines()[-1] == "False"  # torch was not imported
    kept.write_text("{not json")  # a damaged cache is counted afresh and replaced
    proc = list_json(zoo_cache)
    assert {row["name"]: row for row in json.loads(proc.stdout)} == listed
    assert json.loads(kept.read_text()) == json.loads(proc.stdout)


def test_json_lists_every_registered_model_with_params_and_inputs(listed):
    models = list_models()
    assert models, "the zoo is empty"
    for name in models:
        row = listed[name]
        assert row["kind"] == "model"
        assert isinstance(row["params"], int) and row["params"] > 0, row
        assert isinstance(row["inputs"], str) and row["inputs"].strip(), row
        assert row["description"] == get_entry(name).description
        assert isinstance(row["classes"], int) and row["classes"] > 1
    # Nothing else is listed but the fusion methods, which say they are not models.
    assert set(listed) == set(models) | set(FUSERS)
    for name in FUSERS:
        assert listed[name]["kind"] == "fusion" and listed[name]["inputs"]
    assert "attention-fusion" in models  # trained by the engine, listed as a model


def test_meta_device_count_equals_a_real_build(listed):
    entry = get_entry("hybrid-attention")
    model = entry.build(entry.default_config(), listed["hybrid-attention"]["classes"])
    assert listed["hybrid-attention"]["params"] == sum(p.numel() for p in model.parameters())
    assert listed["hybrid-attention"]["inputs"] == "audio mfcc 40 x <=400 + video 48x1x48x48 @10fps"


def test_input_spec_follows_the_config():
    cfg = get_entry("hybrid-attention").default_config()
    cfg.data.modalities = ("video",)
    cfg.data.grayscale = False
    cfg.data.face_size = 112
    cfg.data.fps = 30.0
    assert describe_inputs(cfg.data) == "video 48x3x112x112 @30fps"


def test_text_table_shows_every_name_and_a_count(capsys, zoo_cache, listed, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(zoo_cache))  # the counts the CLI cached above
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "params", "inputs"]
    for name in [*list_models(), *FUSERS]:
        line = next(line for line in lines if line.startswith(f"{name} "))
        assert line.split()[1][0].isdigit(), line


def test_counting_builds_nothing_real():
    """Counting on the meta device allocates no parameter memory."""
    entry = get_entry("hybrid-attention")
    with torch.device("meta"):
        model = entry.build(entry.default_config(), 8)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert entry.count_params(8) == sum(p.numel() for p in model.parameters())


def test_the_zoo_map_names_every_model_and_one_model_loads_alone():
    """``trainers.models.ZOO`` lets a run import one model's module; it must name every
    registered model, each in the module that registers it, and a run of
    hybrid-attention must not pay for torchvision."""
    import subprocess
    import sys

    from trainers.models import ZOO
    from trainers.registry import get_entry

    assert set(ZOO) == set(list_models())
    for name, module in ZOO.items():
        assert get_entry(name).build.__module__ == module, name
    probe = (
        "import sys; from trainers.registry import get_entry; get_entry('hybrid-attention'); "
        "print('torchvision' in sys.modules, 'trainers.models.image' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
