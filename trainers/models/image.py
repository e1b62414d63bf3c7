"""Image emotion models of design note 003: ``image-resnet50``, ``image-efficientnet-b0``,
``image-vit-b16`` (the members of the note's ensemble; ``image-ensemble`` itself
averages their run directories' probabilities, in ``trainers.fusion``).

Architecture: a torchvision backbone built with ``weights=None`` (ImageNet
weights load through ``train.pretrained``, e.g. ``imagenet``: downloaded on first use) with
its own classifier replaced by the note's enhanced head, BN(d) - Dropout(0.5) -
Linear(d, d/2) - ReLU - BN(d/2) - Dropout(0.25) - Linear(d/2, classes). The
backbone sits under ``self.backbone`` with torchvision's own module names, so
a torchvision state dict maps onto it by prefixing ``backbone.`` (and dropping
its ``fc`` / ``classifier`` / ``heads`` tensors, which the new head replaces).

``model.attention`` (CNNs only, **off** by default as in the note, which calls
it optional): 8-head ``nn.MultiheadAttention`` over the last feature map's
spatial positions as tokens, added residually, then averaged; without it the
map is average-pooled as torchvision does. ``forward_features`` returns that
pooled embedding (2048 for ResNet50, 1280 for EfficientNet-B0, 768 for
ViT-B/16: the class token).

Recipe (every entry, the note's numbers): batch 32 with 4 accumulation steps
(128 per optimizer step), 100 epochs, AdamW with weight decay 1e-4, OneCycle
(max lr 5e-3, 10% warm-up, cosine), focal loss alpha 0.25 gamma 2 with label
smoothing 0.1, gradient clipping at 1.0, AMP where CUDA is, a class-balanced
weighted sampler, MixUp (alpha 0.4) / CutMix (alpha 1.0) on every batch (even
odds, ``mix`` section), the note's augmentation, 8-view TTA on val and test,
and progressive resizing 176 -> 224 px at epoch 30.

Choices the note leaves open, stated:

* Imbalance: the note lists a weighted sampler, balanced class weights and
  focal loss. The sampler already makes every class equally frequent in
  training; balanced weights on top would weight a minority class twice
  (about 4x too much for FI's smallest class), so the default is the
  sampler + focal + label smoothing 0.1 and ``train.class_weights="none"``.
  The alternative is ``--set train.sampler=shuffle --set
  train.class_weights=balanced --set train.label_smoothing=0``.
* Early stopping: the note gives no patience; the engine's 10 epochs apply,
  but never before epoch 30 (``train.min_epochs``), when training reaches
  full resolution.
* ViT-B/16 has position embeddings for one input size, so it trains at
  ``data.image_size`` throughout: progressive resizing is off for it
  (``data.start_size`` = ``data.image_size``; a different value is refused).
  Its sizes (``model.patch_size``, ``layers``, ``heads``, ``hidden_dim``,
  ``mlp_dim``) default to ViT-B/16 and exist so tests can build a tiny one.
* ``train.num_workers`` is 8: the note's augmentation costs about 10 ms per
  224 px image on one core, so one process cannot feed a GPU. Results do not
  depend on it (every draw is seeded per item).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn
from torchvision import models as tvm

from trainers.config import ConfigError, ExperimentConfig, TrainConfig
from trainers.data.images import ImageDataConfig, fi_data_module
from trainers.engine.mixing import MixConfig, mix_callbacks
from trainers.engine.weights import (
    EFFICIENTNET_B0_IMAGENET,
    RESNET50_IMAGENET,
    VIT_B16_IMAGENET,
    WeightSource,
)
from trainers.registry import register_model

SEED_NOTE = "003_00999254419ffd90.txt"
Backbone = Literal["resnet50", "efficientnet_b0", "vit_b_16"]


@dataclass
class CNNImageParams:
    # The note's optional multi-head attention over the spatial feature map (off).
    attention: bool = False
    attention_heads: int = 8
    # The enhanced head's two dropouts ("progressive dropout").
    dropout: float = 0.5
    dropout2: float = 0.25

    def validate(self) -> None:
        if self.attention_heads < 1:
            raise ValueError(f"model.attention_heads={self.attention_heads}: must be >= 1")
        for name in ("dropout", "dropout2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model.{name}={getattr(self, name)}: must be in [0, 1)")


@dataclass
class ViTImageParams:
    dropout: float = 0.5
    dropout2: float = 0.25
    # ViT-B/16 by default; smaller values only for tests and quick checks.
    patch_size: int = 16
    layers: int = 12
    heads: int = 12
    hidden_dim: int = 768
    mlp_dim: int = 3072

    def validate(self) -> None:
        for name in ("dropout", "dropout2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model.{name}={getattr(self, name)}: must be in [0, 1)")
        for name in ("patch_size", "layers", "heads", "hidden_dim", "mlp_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}={getattr(self, name)}: must be >= 1")
        if self.hidden_dim % self.heads:
            raise ValueError(
                f"model.hidden_dim={self.hidden_dim}: must be divisible by model.heads={self.heads}"
            )


def image_train_defaults() -> TrainConfig:
    """The note's recipe, shared by every image model (see the module docstring)."""
    return TrainConfig(
        epochs=100,
        batch_size=32,
        lr=5e-3,  # OneCycle's max_lr
        optimizer="adamw",
        weight_decay=1e-4,
        scheduler="onecycle",
        onecycle_pct_start=0.1,
        loss="focal",
        focal_alpha=0.25,
        focal_gamma=2.0,
        label_smoothing=0.1,
        class_weights="none",
        grad_accum=4,
        clip_grad_norm=1.0,
        amp="auto",
        sampler="weighted",
        monitor="accuracy",
        patience=10,
        min_epochs=30,
        num_workers=8,
    )


@dataclass
class ResNet50Config(ExperimentConfig):
    model: CNNImageParams = field(default_factory=CNNImageParams)
    train: TrainConfig = field(default_factory=image_train_defaults)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    pretrained_sources: ClassVar[dict[str, WeightSource]] = {"imagenet": RESNET50_IMAGENET}


@dataclass
class EfficientNetB0Config(ExperimentConfig):
    model: CNNImageParams = field(default_factory=CNNImageParams)
    train: TrainConfig = field(default_factory=image_train_defaults)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    pretrained_sources: ClassVar[dict[str, WeightSource]] = {"imagenet": EFFICIENTNET_B0_IMAGENET}


@dataclass
class ViTB16Config(ExperimentConfig):
    model: ViTImageParams = field(default_factory=ViTImageParams)
    train: TrainConfig = field(default_factory=image_train_defaults)
    # Fixed input size: no progressive resizing (position embeddings fit one size).
    data: ImageDataConfig = field(default_factory=lambda: ImageDataConfig(start_size=224))
    mix: MixConfig = field(default_factory=MixConfig)
    pretrained_sources: ClassVar[dict[str, WeightSource]] = {"imagenet": VIT_B16_IMAGENET}


def enhanced_head(dim: int, num_classes: int, dropout: float, dropout2: float) -> nn.Sequential:
    """The note's classifier: BN, Dropout, Linear d -> d/2, ReLU, BN, Dropout, Linear."""
    return nn.Sequential(
        nn.BatchNorm1d(dim),
        nn.Dropout(dropout),
        nn.Linear(dim, dim // 2),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(dim // 2),
        nn.Dropout(dropout2),
        nn.Linear(dim // 2, num_classes),
    )


class ImageEmotionNet(nn.Module):
    """A torchvision backbone, optional spatial attention, and the enhanced head."""

    def __init__(
        self,
        kind: Backbone,
        backbone: nn.Module,
        dim: int,
        num_classes: int,
        dropout: float,
        dropout2: float,
        attention_heads: int = 0,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.backbone = backbone
        self.embedding_dim = dim
        self.attention = (
            nn.MultiheadAttention(dim, attention_heads, batch_first=True)
            if attention_heads
            else None
        )
        self.head = enhanced_head(dim, num_classes, dropout, dropout2)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The CNN's last feature map ``(B, C, h, w)``."""
        b = self.backbone
        if self.kind == "resnet50":
            x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
            return b.layer4(b.layer3(b.layer2(b.layer1(x))))
        if self.kind == "efficientnet_b0":
            return b.features(x)
        raise ValueError(f"{self.kind} has no spatial feature map")

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The pooled embedding ``(B, D)`` the head classifies (fusion trains on it)."""
        x = batch["image"]
        if self.kind == "vit_b_16":
            vit = self.backbone
            tokens = vit._process_input(x)
            cls = vit.class_token.expand(tokens.shape[0], -1, -1)
            return vit.encoder(torch.cat([cls, tokens], dim=1))[:, 0]
        fmap = self.feature_map(x)
        if self.attention is None:
            return fmap.mean(dim=(2, 3))
        tokens = fmap.flatten(2).transpose(1, 2)  # (B, h*w, C)
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return (tokens + attended).mean(dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.forward_features(batch))


def _cnn(kind: Backbone, p: CNNImageParams, num_classes: int) -> ImageEmotionNet:
    if kind == "resnet50":
        backbone = tvm.resnet50(weights=None)
        dim = backbone.fc.in_features
        backbone.fc = nn.Identity()
    else:
        backbone = tvm.efficientnet_b0(weights=None)
        dim = backbone.classifier[1].in_features
        backbone.classifier = nn.Identity()
    if p.attention and dim % p.attention_heads:
        raise ConfigError(
            "model.attention_heads",
            f"{p.attention_heads} does not divide the feature width {dim} of {kind}",
        )
    heads = p.attention_heads if p.attention else 0
    return ImageEmotionNet(kind, backbone, dim, num_classes, p.dropout, p.dropout2, heads)


def _check_vit_data(cfg: ViTB16Config) -> None:
    d, p = cfg.data, cfg.model
    if d.start_size != d.image_size:
        raise ConfigError(
            "data.start_size",
            f"{d.start_size}: ViT trains at one size (its position embeddings fit "
            f"data.image_size={d.image_size}); set data.start_size={d.image_size}",
        )
    if d.image_size % p.patch_size:
        raise ConfigError(
            "model.patch_size",
            f"{p.patch_size} does not divide data.image_size={d.image_size}",
        )


def _vit_data(cfg: ViTB16Config):
    _check_vit_data(cfg)  # before minutes of decoding, not after
    return fi_data_module(cfg)


@register_model(
    "image-resnet50",
    config=ResNet50Config,
    data=fi_data_module,
    callbacks=mix_callbacks,
    description="ResNet50 + enhanced head (opt. spatial attention), FI images, MixUp/CutMix, TTA",
    seed_note=SEED_NOTE,
)
def build_image_resnet50(cfg: ResNet50Config, num_classes: int) -> ImageEmotionNet:
    return _cnn("resnet50", cfg.model, num_classes)


@register_model(
    "image-efficientnet-b0",
    config=EfficientNetB0Config,
    data=fi_data_module,
    callbacks=mix_callbacks,
    description="EfficientNet-B0 + enhanced head, FI images (ensemble member)",
    seed_note=SEED_NOTE,
)
def build_image_efficientnet_b0(cfg: EfficientNetB0Config, num_classes: int) -> ImageEmotionNet:
    return _cnn("efficientnet_b0", cfg.model, num_classes)


@register_model(
    "image-vit-b16",
    config=ViTB16Config,
    data=_vit_data,
    callbacks=mix_callbacks,
    description="ViT-B/16 + enhanced head, FI images at a fixed size (ensemble member)",
    seed_note=SEED_NOTE,
)
def build_image_vit_b16(cfg: ViTB16Config, num_classes: int) -> ImageEmotionNet:
    _check_vit_data(cfg)
    p = cfg.model
    vit = tvm.VisionTransformer(
        image_size=cfg.data.image_size,
        patch_size=p.patch_size,
        num_layers=p.layers,
        num_heads=p.heads,
        hidden_dim=p.hidden_dim,
        mlp_dim=p.mlp_dim,
    )
    vit.heads = nn.Identity()
    return ImageEmotionNet("vit_b_16", vit, p.hidden_dim, num_classes, p.dropout, p.dropout2)
