"""Config: typed overrides, TOML files, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainers.config import ConfigError, resolve, set_value, to_dict
from trainers.registry import get_entry, list_models


def fresh():
    return get_entry("hybrid-attention").default_config()


def test_defaults_are_the_design_note_numbers():
    cfg = fresh()
    t = cfg.train
    assert (t.batch_size, t.epochs, t.lr, t.patience) == (24, 50, 5e-4, 10)
    assert (t.loss, t.focal_gamma, t.class_weights) == ("focal", 2.0, "inverse")
    assert cfg.model.audio_kernels == (3, 5)
    assert cfg.model.tcn_dilations == (1, 2, 4, 8)


def test_every_registered_model_config_round_trips():
    for name in list_models():
        cfg = get_entry(name).default_config()
        resolve(cfg)
        again = get_entry(name).default_config()
        from trainers.config import apply_mapping

        apply_mapping(again, to_dict(cfg))
        assert to_dict(again) == to_dict(cfg)


def test_set_values_are_typed():
    cfg = fresh()
    resolve(
        cfg,
        assignments=[
            "train.lr=1e-3",
            "epochs=7",
            "model.tcn_dilations=1,2",
            "train.focal_alpha=0.25",
            "data.grayscale=false",
        ],
    )
    assert cfg.train.lr == 1e-3 and cfg.train.epochs == 7
    assert cfg.model.tcn_dilations == (1, 2)
    assert cfg.train.focal_alpha == 0.25
    assert cfg.data.grayscale is False
    set_value(cfg, "train.focal_alpha", "none")
    assert cfg.train.focal_alpha is None


@pytest.mark.parametrize(
    ("assignment", "key", "fragment"),
    [
        ("train.lrr=1", "train.lrr", "did you mean train.lr"),
        ("train.epochs=ten", "train.epochs", "expected int"),
        ("train.optimizer=sgd", "train.optimizer", "one of 'adam', 'adamw'"),
        ("train.epochs=0", "train.epochs", "must be >= 1"),
        ("model.heads=5", "model.d_model", "divisible"),
        ("data.face_size=8", "data.face_size", ">= 16"),
        ("nonsense", "nonsense", "expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(assignment, key, fragment):
    with pytest.raises(ConfigError) as info:
        resolve(fresh(), assignments=[assignment])
    assert info.value.key == key
    assert fragment in str(info.value)


def test_toml_file_and_its_errors(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[train]\nlr = 0.002\nepochs = 3\n[model]\nd_model = 64\n")
    cfg = resolve(fresh(), config_files=[good], assignments=["train.epochs=4"])
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.d_model) == (0.002, 4, 64)
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError) as info:
        resolve(fresh(), config_files=[bad])
    assert info.value.key == "train.learning_rate"
    assert "bad.toml" in str(info.value)


def test_cli_wrong_key_exits_2_and_creates_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "runs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers",
            "train",
            "hybrid-attention",
            "--data",
            str(data),
            "--out",
            str(out),
            "--set",
            "train.lerning_rate=0.1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "train.lerning_rate" in proc.stderr
    assert not out.exists()
    assert list(data.iterdir()) == []


def test_cli_unknown_model_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "trainers", "train", "hybrid-atention", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "did you mean hybrid-attention" in proc.stderr.lower()
