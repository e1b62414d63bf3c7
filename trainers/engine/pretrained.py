"""Pretrained weights into our models, from a local file, torch hub's cache, or a name.

``train.pretrained`` is a path, ``hub:<file>`` for
``torch.hub.get_dir()/checkpoints/<file>`` (the place torchvision and
pytorchvideo download to: a file fetched on another machine and copied there is
found under the name it was published with), or a name the model knows
(``imagenet``, ``kinetics400``: its config's ``pretrained_sources``), which
``trainers.engine.weights`` downloads into that same cache on first use, with
the published hash checked, or finds there without network.

Why the loading is forgiving where checkpoints (``engine.checkpoint``) are
strict: a pretrained file was written by someone else's code. It may wrap the
state dict (``{"state_dict"}``, ``{"model"}``, pytorchvideo's
``{"model_state"}``), carry DDP's ``module.`` prefix, and name a backbone
``conv1.weight`` that our wrapper holds as ``backbone.conv1.weight``. So the
key mapping is found, not configured: every (source prefix to drop, model
prefix to add) pair is scored by how many tensors it lands with the right
shape, and the best one wins. Tensors that do not fit (a 1000-class head in an
8-class model) are skipped, and every skipped, unused or uncovered name is
reported, so a run's train.log says exactly what was and was not initialised.
A file of which nothing fits, or so little that the match is a coincidence of
shapes (under half of both the file's and the model's tensors), is an error,
never a silent no-op.
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainers.engine.weights import NAMES, WeightsDownloadError, fetch, hub_dir

HUB_SCHEME = "hub:"
# Keys under which checkpoint formats nest the state dict, most specific first:
# ours and timm's ("model", "state_dict"), pytorchvideo's .pyth ("model_state").
WRAPPER_KEYS = ("state_dict", "model_state", "model", "module", "net")
# Prefixes that wrappers add to every key: DDP and torch.compile.
NOISE_PREFIXES = ("module.", "_orig_mod.")
SHOW = 8  # names listed per category in the report
# A load must fill this share of the file's or of the model's tensors: fewer is a
# coincidence of shapes (BatchNorm vectors of equal width), not the right weights.
MIN_SHARE = 0.5


class PretrainedError(RuntimeError):
    """The weights file is missing, unreadable, or fits nothing in the model."""


def resolve_spec(spec: str) -> Path:
    """``hub:<file>`` -> the hub cache path; anything else is a local path."""
    if spec.startswith(HUB_SCHEME):
        name = spec[len(HUB_SCHEME) :]
        if not name or "/" in name:
            raise PretrainedError(
                f"train.pretrained={spec!r}: expected hub:<file name>, e.g. "
                "hub:resnet18-f37072fd.pth (a file in torch hub's checkpoints directory)"
            )
        return hub_dir() / name
    return Path(spec).expanduser()


def missing_file_message(spec: str) -> str | None:
    """Why ``spec`` cannot be loaded and where to put the file, or None when it exists
    (or is a named source: downloaded when loaded, see trainers.engine.weights)."""
    if spec in NAMES:
        return None
    path = resolve_spec(spec)
    if path.is_file():
        return None
    where = (
        f"copy the file into torch hub's cache as {path}"
        if spec.startswith(HUB_SCHEME)
        else f"put the weights file at {path}, or copy it into torch hub's cache "
        f"({hub_dir()}/<file>) and pass hub:<file>"
    )
    return (
        f"pretrained weights {path} not found ({'a directory' if path.is_dir() else 'no file'}). "
        f"Weights cannot be downloaded on this machine: {where} "
        "(e.g. from a machine where torchvision or pytorchvideo downloaded them)"
    )


@dataclass
class PretrainedReport:
    """What a load did; ``str()`` is the line the engine writes to train.log."""

    path: Path
    strip: str  # prefix removed from the file's keys
    add: str  # prefix added to land them in the model
    loaded: list[str] = field(default_factory=list)  # model keys now holding file tensors
    skipped: list[str] = field(default_factory=list)  # "name file-shape vs model-shape"
    unused: list[str] = field(default_factory=list)  # file keys with no model key
    kept: list[str] = field(default_factory=list)  # model keys left as initialised
    note: str = ""

    @property
    def skipped_names(self) -> list[str]:
        return [entry.split(" ", 1)[0] for entry in self.skipped]

    def __str__(self) -> str:
        total = len(self.loaded) + len(self.kept)
        parts = [f"loaded {len(self.loaded)}/{total} model tensors from {self.path}"]
        if self.strip or self.add:
            parts.append(f"file keys {self.strip or '(root)'}* -> model {self.add or '(root)'}*")
        if self.skipped:
            parts.append(f"skipped for shape {len(self.skipped)}: {_names(self.skipped)}")
        if self.unused:
            parts.append(f"unused from file {len(self.unused)}: {_names(self.unused)}")
        if self.kept:
            parts.append(f"kept initialised {len(self.kept)}: {_names(self.kept)}")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOW])
    return shown + (f", ... and {len(items) - SHOW} more" if len(items) > SHOW else "")


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a weights file, unwrapped and without DDP/compile prefixes."""
    note = ""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Full checkpoints (ours carry numpy RNG states, pytorchvideo's .pyth their cfg)
        # hold more than tensors. The file is one the user named on this machine.
        raw = torch.load(path, map_location="cpu", weights_only=False)
        note = "file holds pickled objects besides tensors (read with weights_only=False)"
    except Exception as exc:
        raise PretrainedError(f"cannot read pretrained weights {path}: {exc}") from exc
    state = _unwrap(raw)
    if not state:
        raise PretrainedError(
            f"{path}: no tensors found (top-level keys: {_top_keys(raw)}); expected a state "
            f"dict, or one nested under {', '.join(WRAPPER_KEYS)}"
        )
    return {_strip_noise(k): v for k, v in state.items()}, note


def _unwrap(raw: Any) -> dict[str, torch.Tensor]:
    for _ in range(4):  # {"model": {"state_dict": ...}} nests at most a few levels
        if isinstance(raw, nn.Module):
            raw = raw.state_dict()
        if not isinstance(raw, Mapping):
            return {}
        nested = next(
            (raw[k] for k in WRAPPER_KEYS if isinstance(raw.get(k), Mapping | nn.Module)), None
        )
        tensors = {k: v for k, v in raw.items() if isinstance(k, str) and torch.is_tensor(v)}
        if nested is None or len(tensors) > len(raw) // 2:
            return tensors
        raw = nested
    return {}


def _top_keys(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return ", ".join(str(k) for k in list(raw)[:10]) or "(empty)"
    return type(raw).__name__


def _strip_noise(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in NOISE_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def best_mapping(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> tuple[str, str, int]:
    """The (drop, add) prefix pair that lands the most file tensors with matching shapes.

    Candidates come from the keys themselves: ``add`` is any module path of the
    model under which a file key (after dropping ``drop``, a prefix of the file's
    first two levels) exists. Ties go to the shortest pair, so an exact match
    beats a far-fetched one.
    """
    by_suffix: dict[str, list[str]] = defaultdict(list)
    for key in target:
        parts = key.split(".")
        for i in range(len(parts)):
            by_suffix[".".join(parts[i:])].append("".join(p + "." for p in parts[:i]))
    drops = {""}
    for key in source:
        parts = key.split(".")
        for depth in range(1, min(3, len(parts))):
            drops.add("".join(p + "." for p in parts[:depth]))
    votes: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for drop in drops:
        for key, tensor in source.items():
            if not key.startswith(drop):
                continue
            for add in by_suffix.get(key[len(drop) :], ()):
                vote = votes[(drop, add)]
                vote[1] += 1
                if tuple(target[add + key[len(drop) :]].shape) == tuple(tensor.shape):
                    vote[0] += 1
    if not votes:
        return "", "", 0
    (drop, add), (fits, _) = max(
        votes.items(), key=lambda kv: (kv[1][0], kv[1][1], -len(kv[0][0]) - len(kv[0][1]))
    )
    return drop, add, fits


def load_pretrained(
    model: nn.Module, spec: str, sources: Mapping[str, Any] | None = None
) -> PretrainedReport:
    """Copy every fitting tensor of ``spec`` into ``model`` (in place); report the rest.

    ``sources``: the model's named sources (its config's ``pretrained_sources``),
    for ``spec`` = ``imagenet``, ``kinetics400``.
    """
    if spec in NAMES:
        known = sources or {}
        if spec not in known:
            raise PretrainedError(
                f"train.pretrained={spec!r}: not a named source of this model; its named "
                f"sources: {', '.join(sorted(known)) or 'none'}"
            )
        try:
            path = fetch(known[spec])
        except WeightsDownloadError as exc:
            raise PretrainedError(f"train.pretrained={spec}: {exc}") from exc
        report = _load_file(model, path)
        report.note = "; ".join(filter(None, [f"{spec}: {known[spec].origin}", report.note]))
        return report
    problem = missing_file_message(spec)
    if problem:
        raise PretrainedError(f"train.pretrained: {problem}")
    return _load_file(model, resolve_spec(spec))


def _load_file(model: nn.Module, path: Path) -> PretrainedReport:
    source, note = read_state_dict(path)
    own = model.state_dict()
    drop, add, fits = best_mapping(source, own)
    if fits == 0:
        raise PretrainedError(
            f"{path}: none of its {len(source)} tensors fits the model under any key prefix "
            f"(file keys like {', '.join(sorted(source)[:3])}; model keys like "
            f"{', '.join(sorted(own)[:3])}): is it the weights of another architecture?"
        )
    if fits < MIN_SHARE * len(source) and fits < MIN_SHARE * len(own):
        raise PretrainedError(
            f"{path}: only {fits} of its {len(source)} tensors (and of the model's {len(own)}) "
            f"fit, best under file keys {drop or '(root)'}* -> model {add or '(root)'}*: a "
            "coincidence of shapes, not weights of this architecture; none were loaded"
        )
    report = PretrainedReport(path=path, strip=drop, add=add, note=note)
    update: dict[str, torch.Tensor] = {}
    for key in sorted(source):
        tensor = source[key]
        name = add + key[len(drop) :] if key.startswith(drop) else None
        if name is None or name not in own:
            report.unused.append(key)
        elif tuple(own[name].shape) != tuple(tensor.shape):
            file_shape = "x".join(map(str, tensor.shape)) or "scalar"
            model_shape = "x".join(map(str, own[name].shape)) or "scalar"
            report.skipped.append(f"{name} ({file_shape} in file vs {model_shape} in model)")
        else:
            update[name] = tensor
    model.load_state_dict(update, strict=False)
    report.loaded = sorted(update)
    report.kept = sorted(set(own) - set(update))
    return report
