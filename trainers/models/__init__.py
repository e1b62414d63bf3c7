"""The model zoo: which module registers which name.

A command that needs one model imports only that model's module: the image
models pull in torchvision (and with it torch._dynamo, about 3 s on 2 cores),
which a hybrid-attention run or a config check never uses. Listing the zoo
imports them all. ``tests/test_cli_list.py`` checks that this map and the
registry agree, so a new model cannot be left out.
"""

from __future__ import annotations

ZOO: dict[str, str] = {
    "hybrid-attention": "trainers.models.hybrid_attention",
    "branched-baseline": "trainers.models.branched",
    "branched-regularization": "trainers.models.branched",
    "branched-sync-aug": "trainers.models.branched",
    "branched-optimizer": "trainers.models.branched",
    "branched-tcn": "trainers.models.branched",
    "r3d-18": "trainers.models.video3d",
    "slowfast-r50": "trainers.models.video3d",
    "meld-slowfast": "trainers.models.video3d",
    "image-resnet50": "trainers.models.image",
    "image-efficientnet-b0": "trainers.models.image",
    "image-vit-b16": "trainers.models.image",
    "attention-fusion": "trainers.fusion.attention",
}
