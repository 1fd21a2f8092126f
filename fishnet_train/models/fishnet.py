"""FishNet (Sun et al., NeurIPS 2018) as released: modules and builders."""
from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .blocks import Bottleneck, Bridge, DownStage, FishStage, res_stage

MIN_INPUT_SIZE = 32
# (c_in, c_out, k, dilation, skip channels) of the three body stages (4, 5, 6).
_BODY = ((512, 512, 1, 1, 256), (768, 384, 2, 2, 128), (512, 256, 2, 4, 64))
# (channels, skip channels) of the three head stages (7, 8, 9).
_HEAD = ((320, 512), (832, 768), (1600, 512))
FEATURE_CHANNELS = (320, 832, 1600, 2112)
# The released initialisation draws the 1x1 classifier with a fan-out std, sqrt(2 / classes): right
# for ImageNet's 1000, but about 10x too wide for 10 classes (logits of ~30 at the first step).
# "auto" keeps that std for 1000 classes and more, and caps it at the 1000-class value below.
CLASSIFIER_INITS = ("auto", "released", "zeros")
CLASSIFIER_PREFIX = "classifier.fc."  # the final 1x1 classifier's parameter names
RELEASED_CLASSES = 1000


def _stem() -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = []
    for i, (cin, cout, stride) in enumerate(((3, 32, 2), (32, 32, 1), (32, 64, 1)), start=1):
        layers += [
            (f"conv{i}", nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)),
            (f"bn{i}", nn.BatchNorm2d(cout)),
            (f"relu{i}", nn.ReLU(inplace=True)),
        ]
    layers.append(("pool", nn.MaxPool2d(3, 2, padding=1)))
    return nn.Sequential(OrderedDict(layers))


class _Classifier(nn.Module):
    def __init__(self, in_ch: int, num_classes: int, drop_rate: float) -> None:
        super().__init__()
        mid = in_ch // 2
        self.reduce = nn.Sequential(
            nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Conv2d(mid, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.reduce(x)))).flatten(1)


@contextlib.contextmanager
def _bn_stats_frozen(module: nn.Module) -> Iterator[None]:
    """Recomputing a checkpointed segment must not update BN running statistics twice:
    whatever the recomputation does to them is undone."""
    buffers = [b for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, s in zip(buffers, saved):
                b.copy_(s)


class FishNet(nn.Module):
    """FishNet: a tail (down), body (up) and head (down) sharing features across stages.

    ``forward_features`` returns the head features at strides 4, 8, 16 and 32
    (``feature_channels``); ``forward`` adds the classifier.
    """

    classifier_prefix = CLASSIFIER_PREFIX

    def __init__(
        self,
        residual_blocks: Sequence[int],
        transfer_blocks: Sequence[int],
        num_classes: int = 1000,
        drop_rate: float = 0.0,
        grad_checkpointing: bool = False,
        classifier_init: str = "auto",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(residual_blocks) != 10 or len(transfer_blocks) != 6:
            raise ValueError("FishNet needs 10 residual-block counts and 6 transfer-block counts")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if classifier_init not in CLASSIFIER_INITS:
            raise ValueError(f"classifier_init must be one of {', '.join(CLASSIFIER_INITS)}, got {classifier_init!r}")
        r, t = residual_blocks, transfer_blocks
        self.num_classes = num_classes
        self.feature_channels = FEATURE_CHANNELS
        self.grad_checkpointing = grad_checkpointing
        self.stem = _stem()
        self.tail = nn.ModuleList(DownStage(c, 2 * c, r[i]) for i, c in enumerate((64, 128, 256)))
        self.bridge = Bridge(512, r[3])
        self.body = nn.ModuleList(
            FishStage(res_stage(cin, cout, r[4 + i], "up", k, dil), skip, t[i], upsample=True)
            for i, (cin, cout, k, dil, skip) in enumerate(_BODY)
        )
        self.head = nn.ModuleList(
            FishStage(res_stage(c, c, r[7 + i]), skip, t[3 + i], upsample=False)
            for i, (c, skip) in enumerate(_HEAD)
        )
        self.classifier = _Classifier(FEATURE_CHANNELS[-1], num_classes, drop_rate)
        self.backbone_frozen = False
        self._init_weights(classifier_init)
        if zero_init_residual:
            self._zero_init_residual()

    def _zero_init_residual(self) -> None:
        """Each bottleneck's last convolution starts at zero, so every block starts as its shortcut
        (Goyal et al. 2017). The blocks are pre-activation: their last layer is conv3, not a BN, so it
        is conv3 that starts at zero, as timm does for its pre-activation ResNets."""
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.conv3.weight)

    def _init_weights(self, classifier_init: str) -> None:
        fc = self.classifier.fc
        for m in self.modules():
            if m is fc and classifier_init == "zeros":
                for p in fc.parameters():
                    nn.init.zeros_(p)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                if m is fc and classifier_init == "auto":
                    fan_out = max(fan_out, RELEASED_CLASSES)
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def freeze_backbone(self) -> FishNet:
        """A linear probe: only the classifier's final 1x1 layer trains; every other layer keeps its
        weights and, in training mode too, its BatchNorm statistics. Returns the model."""
        for name, p in self.named_parameters():
            p.requires_grad_(name.startswith(CLASSIFIER_PREFIX))
        self.backbone_frozen = True
        return self.train(self.training)

    def train(self, mode: bool = True) -> FishNet:
        super().train(mode)
        if self.backbone_frozen:
            for part in (self.stem, self.tail, self.bridge, self.body, self.head, self.classifier.reduce):
                part.eval()
        return self

    def _run(self, stage: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled() and not self.backbone_frozen:
            return checkpoint(
                stage, *inputs, use_reentrant=False,
                context_fn=lambda: (contextlib.nullcontext(), _bn_stats_frozen(stage)),
            )
        return stage(*inputs)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Head features at strides 4, 8, 16, 32 (channels ``self.feature_channels``)."""
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(f"FishNet needs inputs of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, "
                             f"got {tuple(x.shape[-2:])}")
        f0 = self._run(self.stem, x)
        f1 = self._run(self.tail[0], f0)
        f2 = self._run(self.tail[1], f1)
        f3 = self._run(self.tail[2], f2)
        f4 = self._run(self.bridge, f3)
        f5 = self._run(self.body[0], f4, f2)
        f6 = self._run(self.body[1], f5, f1)
        f7 = self._run(self.body[2], f6, f0)
        f8 = self._run(self.head[0], f7, f6)
        f9 = self._run(self.head[1], f8, f5)
        f10 = self._run(self.head[2], f9, f4)
        return [f7, f8, f9, f10]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x)[-1])


def _fishnet(residual_blocks: Sequence[int], transfer_blocks: Sequence[int], **kwargs) -> FishNet:
    return FishNet(residual_blocks, transfer_blocks, **kwargs)


def fishnet99(**kwargs) -> FishNet:
    """FishNet-99: 16.6 M parameters, 4.26 GMACs at 224."""
    return _fishnet((2, 2, 6, 2, 1, 1, 1, 1, 2, 2), (1, 1, 1, 1, 1, 4), **kwargs)


def fishnet150(**kwargs) -> FishNet:
    """FishNet-150: 25.0 M parameters, 6.40 GMACs at 224."""
    return _fishnet((2, 4, 8, 4, 2, 2, 2, 2, 2, 4), (2, 2, 2, 2, 2, 4), **kwargs)


def fishnet201(**kwargs) -> FishNet:
    """FishNet-201: 44.6 M parameters, 10.51 GMACs at 224."""
    return _fishnet((3, 4, 12, 4, 2, 2, 2, 2, 3, 10), (2, 2, 2, 2, 2, 9), **kwargs)
