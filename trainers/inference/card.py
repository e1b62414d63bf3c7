"""The model card (README.md) of an exported folder, written from the run's summary.json.

Hugging Face model cards open with YAML front matter (library_name, tags, metrics and
a model-index with the results); the body says what a reader needs to judge the
numbers: the data set and whether it was generated, the split protocol and which
actors were held out, the test metrics beside the majority-class floor, the recipe,
how to run predict on the folder, and the limitations that follow from all that.

Standard library only: ``render`` takes the export's config.json content and the
summary as plain dicts, so a card can be rewritten without torch.
"""

from __future__ import annotations

import json
from typing import Any

METRICS = (
    ("accuracy", "accuracy", "accuracy", {}),
    ("macro_f1", "macro-F1", "f1", {"average": "macro"}),
    ("weighted_f1", "weighted-F1", "f1", {"average": "weighted"}),
    ("uar", "UAR (macro recall)", "recall", {"average": "macro"}),
)
# Below this many test samples one sample moves accuracy by more than half a point.
SMALL_TEST_SET = 200


def generated_corpus(summary: dict[str, Any] | None) -> bool | None:
    """Whether the run trained on the project's generator's output, as its summary.json
    recorded it; for a run from before summary.json did, its data root is looked at
    (None when that is not on this machine any more)."""
    from trainers.data.synth.manifest import is_generated

    data = (summary or {}).get("data") or {}
    if "generated" in data:
        return data["generated"]
    return is_generated(data.get("root") or "")


def _q(value: Any) -> str:
    """A YAML scalar: JSON strings are valid double-quoted YAML."""
    return json.dumps(value)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "n/a"


def _front_matter(config: dict[str, Any], summary: dict[str, Any] | None) -> list[str]:
    data = (summary or {}).get("data") or {}
    dataset = data.get("dataset") or (config.get("config") or {}).get("data", {}).get("layout")
    kind = ((config.get("inference") or {}).get("preprocessing") or {}).get("kind")
    tags = ["emotion-recognition", config["model_name"]]
    tags += [t for t in (kind, dataset) if t]
    lines = ["---", "library_name: emoconsole", "tags:"]
    lines += [f"- {_q(t)}" for t in dict.fromkeys(tags)]
    if dataset:
        lines += ["datasets:", f"- {_q(dataset)}"]
    lines += ["metrics:", "- accuracy", "- f1", "- recall"]
    test = (summary or {}).get("test")
    if isinstance(test, dict):
        lines += [
            "model-index:",
            f"- name: {_q(config.get('run_id') or config['model_name'])}",
            "  results:",
            "  - task:",
            "      type: emotion-recognition",
            "      name: Emotion recognition",
            "    dataset:",
            f"      name: {_q(dataset or 'unknown')}",
            f"      type: {_q(dataset or 'unknown')}",
            "      split: test",
            "    metrics:",
        ]
        for key, name, kind_, args in METRICS:
            if key not in test:
                continue
            lines += [
                f"    - type: {kind_}",
                f"      name: {_q(name)}",
                f"      value: {test[key]}",
            ]
            if args:
                lines.append(f"      args: {json.dumps(args)}")
    lines.append("---")
    return lines


def _data_section(config: dict, summary: dict | None, generated: bool | None) -> list[str]:
    data = (summary or {}).get("data") or {}
    cfg_data = (config.get("config") or {}).get("data") or {}
    lines = ["## Data", ""]
    dataset = data.get("dataset") or cfg_data.get("layout") or "unknown"
    origin = {
        True: "**generated** by the project's synthetic corpus generator "
        "(`python -m trainers synth`), not real recordings",
        False: "real recordings (no generator manifest at the data root)",
        None: "unknown whether real or generated (the data root is not on the exporting machine)",
    }[generated]
    lines.append(f"- data set: `{dataset}` (layout `{cfg_data.get('layout', dataset)}`): {origin}")
    modalities = data.get("modalities") or cfg_data.get("modalities")
    if modalities:
        lines.append(f"- modalities: {', '.join(modalities)}")
    lines.append(f"- classes ({len(config['classes'])}): {', '.join(config['classes'])}")
    splits = data.get("splits") or {}
    if splits:
        lines += ["", "| split | samples | actors |", "| --- | ---: | --- |"]
        for name in ("train", "val", "test"):
            s = splits.get(name) or {}
            actors = ", ".join(map(str, s.get("actors") or [])) or "n/a"
            lines.append(f"| {name} | {s.get('samples', 'n/a')} | {actors} |")
    lines += ["", "### Split protocol", ""]
    split = data.get("split") or cfg_data.get("split")
    if split == "actor":
        lines.append(
            "Actor-grouped: every actor's recordings are in one split only, so val and test "
            "measure speakers the model never heard or saw."
        )
    elif split:
        lines.append(f"Split: `{split}`.")
    fractions = [
        f"{k} = {cfg_data[k]}" for k in ("val_fraction", "test_fraction", "split_seed")
        if k in cfg_data
    ]  # fmt: skip
    if fractions:
        lines.append(f"Settings: {', '.join(fractions)}.")
    held = [
        f"{name}: {', '.join(map(str, (splits.get(name) or {}).get('actors') or []))}"
        for name in ("val", "test")
        if (splits.get(name) or {}).get("actors")
    ]
    if held:
        lines.append(f"Held-out actors: {'; '.join(held)}.")
    return lines


def _results_section(config: dict, summary: dict | None) -> list[str]:
    lines = ["## Results", ""]
    test = (summary or {}).get("test")
    if not isinstance(test, dict):
        return [*lines, "No summary.json: the run's metrics are not known to this export."]
    floor = (summary or {}).get("majority_floor") or {}
    val = (summary or {}).get("val") or {}
    checkpoint = config.get("checkpoint") or {}
    epoch = checkpoint.get("epoch")
    lines.append(
        f"Test split, {checkpoint.get('kind', 'best')} checkpoint"
        + (f" (epoch {epoch})" if epoch is not None else "")
        + f", {_test_samples(summary)} samples. Read "
        "every number against the majority-class floor: what always predicting the "
        "training set's most frequent class scores on the same test set."
    )
    lines += ["", "| metric | test | majority-class floor | val |", "| --- | ---: | ---: | ---: |"]
    for key, name, _kind, _args in METRICS:
        lines.append(
            f"| {name} | {_num(test.get(key))} | {_num(floor.get(key))} | {_num(val.get(key))} |"
        )
    per_class = test.get("per_class") or {}
    if per_class:
        lines += [
            "",
            "Per class (test):",
            "",
            "| class | precision | recall | F1 | support |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, row in per_class.items():
            lines.append(
                f"| {name} | {_num(row.get('precision'))} | {_num(row.get('recall'))} | "
                f"{_num(row.get('f1'))} | {row.get('support', 'n/a')} |"
            )
    return lines


def _test_samples(summary: dict | None) -> Any:
    splits = ((summary or {}).get("data") or {}).get("splits") or {}
    return (splits.get("test") or {}).get("samples", "n/a")


def _recipe_section(config: dict, summary: dict | None) -> list[str]:
    cfg = config.get("config") or {}
    train = cfg.get("train") or {}
    lines = ["## Recipe", ""]
    epochs = train.get("epochs")
    run = summary or {}
    if "epochs_run" in run:
        epochs = f"{run['epochs_run']} of {epochs} (stopped: {run.get('stop_reason', 'n/a')})"
    loss = train.get("loss")
    if loss == "focal":
        loss = f"focal (gamma {train.get('focal_gamma')})"
    if train.get("label_smoothing"):
        loss = f"{loss}, label smoothing {train['label_smoothing']}"
    rows = [
        ("model", f"`{config['model_name']}` ({', '.join(config.get('architectures') or [])})"),
        ("epochs", epochs),
        ("batch size", train.get("batch_size")),
        ("learning rate", train.get("lr")),
        ("optimizer", train.get("optimizer")),
        ("scheduler", train.get("scheduler")),
        ("loss", loss),
        ("class weights", train.get("class_weights")),
        ("monitor", train.get("monitor")),
        ("seed", train.get("seed")),
    ]
    lines += ["| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows if v not in (None, "")]
    model = cfg.get("model") or {}
    if model:
        values = ", ".join(f"{k}={json.dumps(v)}" for k, v in model.items())
        lines += ["", f"Model settings: {values}."]
    lines += ["", "The full resolved config is `config.json`'s `config`."]
    return lines


def _usage_section(config: dict) -> list[str]:
    lines = [
        "## Use",
        "",
        "With emoconsole's training extra installed, from this folder (no run directory, "
        "no training data; the preprocessing and the statistics fitted on the train split "
        "are in `config.json`'s `inference`):",
        "",
        "```",
        "python -m trainers predict . clip.mp4 more-clips/ [--json]",
        "```",
        "",
        "or in Python: `trainers.inference.bundle.load_bundle(folder)` returns the model in "
        "eval mode with its classes and preprocessing.",
    ]
    files = config.get("files") or {}
    inputs = config.get("inputs") or {}
    if "onnx" in files and inputs:
        lines += [
            "",
            f"`{files['onnx']}` takes the preprocessed tensors (batch and time axes dynamic; "
            "masks are True at real frames) and returns `logits`:",
            "",
        ]
        lines += [f"- `{k}`: {v['dtype']} {v['shape']}" for k, v in inputs.items()]
    if "torchscript" in files:
        lines += ["", f"`{files['torchscript']}` (TorchScript) takes the same tensors in order."]
    return lines


def _limitations_section(config: dict, summary: dict | None, generated: bool | None) -> list[str]:
    lines = ["## Limitations", ""]
    if generated:
        lines.append(
            "- Trained and tested on **generated data**: the scores say nothing about "
            "real recordings of people."
        )
    elif generated is None:
        lines.append(
            "- Whether the data was generated could not be checked at export time; see the "
            "run's data root."
        )
    n = _test_samples(summary)
    if isinstance(n, int) and n < SMALL_TEST_SET:
        lines.append(
            f"- Small test set: {n} samples, so one sample moves accuracy by "
            f"{100 / max(n, 1):.1f} points."
        )
    data = (summary or {}).get("data") or {}
    test_actors = ((data.get("splits") or {}).get("test") or {}).get("actors") or []
    split_seed = ((config.get("config") or {}).get("data") or {}).get("split_seed")
    lines.append(
        "- A single held-out split"
        + (f" (split seed {split_seed})" if split_seed is not None else "")
        + (f", {len(test_actors)} test actor(s)" if test_actors else "")
        + ": no cross-validation, no spread over seeds or folds."
    )
    test = (summary or {}).get("test") or {}
    floor = (summary or {}).get("majority_floor") or {}
    if "accuracy" in test and "accuracy" in floor and test["accuracy"] <= floor["accuracy"]:
        lines.append("- Test accuracy does not beat the majority-class floor.")
    pre = (config.get("inference") or {}).get("preprocessing") or {}
    detector = (pre.get("video") or {}).get("face_detector")
    if detector:
        # Checkpoints written before data.face_detector recorded {"kind": "opencv-haar", ...}.
        name = detector.get("name", "haar") if isinstance(detector, dict) else "haar"
        found_by = "MTCNN (facenet-pytorch)" if name == "mtcnn" else "OpenCV's Haar cascade"
        lines.append(
            f"- Faces are found by {found_by}: profile views, occlusion and poor "
            "light lose the face, and the video input then degrades."
        )
    return lines


def render(config: dict[str, Any], summary: dict[str, Any] | None, generated: bool | None) -> str:
    """README.md of an exported folder (see the module docstring)."""
    title = f"# {config['model_name']}: {config.get('run_id', '')}".rstrip(": ")
    lines = [*_front_matter(config, summary), "", title, ""]
    lines.append(
        f"An emotion-recognition model trained with emoconsole (`{config['model_name']}`), "
        f"exported from run `{config.get('run_id', 'unknown')}`. It predicts one of "
        f"{len(config['classes'])} classes."
    )
    for section in (
        _data_section(config, summary, generated),
        _results_section(config, summary),
        _recipe_section(config, summary),
        _usage_section(config),
        _limitations_section(config, summary, generated),
    ):
        lines += ["", *section]
    return "\n".join(lines) + "\n"
