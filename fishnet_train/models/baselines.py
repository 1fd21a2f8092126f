"""The paper's baselines, ResNet and DenseNet, as torchvision builds them (the same modules and parameter
names, so torchvision's released ``.pth`` files load as they are), with what the trainer asks of every
model: ``num_classes``, ``classifier_prefix``, ``forward_features`` and ``freeze_backbone``."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import densenet as tv_densenet
from torchvision.models import resnet as tv_resnet

# What FishNet has and these do not: refused for a baseline in one line (validation.py), never ignored.
BASELINE_INITS = ("auto", "zeros")  # auto: torchvision's own initialisation


class DropoutLinear(nn.Linear):
    """A linear classifier with dropout on its input (``model.drop_rate``): the parameter names of
    ``nn.Linear``, so torchvision's files still load."""

    def __init__(self, in_features: int, out_features: int, drop_rate: float) -> None:
        super().__init__(in_features, out_features)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.dropout(x, self.drop_rate, self.training))


class _Baseline(nn.Module):
    """What the trainer needs of a model beyond its forward; mixed into torchvision's classes."""

    classifier_prefix = ""
    num_classes: int
    backbone_frozen: bool

    def _classifier(self) -> nn.Linear:
        return self.get_submodule(self.classifier_prefix.rstrip("."))  # type: ignore[return-value]

    def _finish(self, num_classes: int, drop_rate: float, classifier_init: str) -> None:
        if classifier_init not in BASELINE_INITS:
            raise ValueError(f"classifier_init must be one of {', '.join(BASELINE_INITS)} for a baseline, "
                             f"got {classifier_init!r}")
        old = self._classifier()
        new = DropoutLinear(old.in_features, num_classes, drop_rate)
        new.load_state_dict(old.state_dict())  # torchvision's initialisation, kept
        if classifier_init == "zeros":
            nn.init.zeros_(new.weight)
            nn.init.zeros_(new.bias)
        parent, _, name = self.classifier_prefix.rstrip(".").rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, name, new)
        self.num_classes = num_classes
        self.backbone_frozen = False

    def freeze_backbone(self) -> _Baseline:
        """A linear probe: only the classifier trains; every other layer keeps its weights and, in training
        mode too, its BatchNorm statistics. Returns the model."""
        for name, p in self.named_parameters():
            p.requires_grad_(name.startswith(self.classifier_prefix))
        self.backbone_frozen = True
        return self.train(self.training)

    def train(self, mode: bool = True) -> _Baseline:
        super().train(mode)
        if self.backbone_frozen:
            for module in self.modules():
                if module is not self and not isinstance(module, nn.Linear):
                    module.eval()
        return self


class ResNet(_Baseline, tv_resnet.ResNet):
    """torchvision's ResNet (v1.5: the stride on the 3x3 convolution)."""

    classifier_prefix = "fc."
    feature_channels = (256, 512, 1024, 2048)
    conv1: nn.Conv2d
    bn1: nn.BatchNorm2d
    relu: nn.ReLU
    maxpool: nn.MaxPool2d
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, layers: Sequence[int], num_classes: int = 1000, drop_rate: float = 0.0,
                 classifier_init: str = "auto", zero_init_residual: bool = False) -> None:
        super().__init__(tv_resnet.Bottleneck, list(layers), num_classes=num_classes,
                         zero_init_residual=zero_init_residual)
        self._finish(num_classes, drop_rate, classifier_init)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of layer1..layer4: strides 4, 8, 16, 32 (channels ``self.feature_channels``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


class DenseNet(_Baseline, tv_densenet.DenseNet):
    """torchvision's DenseNet-BC."""

    classifier_prefix = "classifier."
    features: nn.Sequential

    def __init__(self, growth_rate: int, blocks: Sequence[int], init_features: int, num_classes: int = 1000,
                 drop_rate: float = 0.0, classifier_init: str = "auto") -> None:
        super().__init__(growth_rate, tuple(blocks), init_features, num_classes=num_classes)
        channels, widths = init_features, []
        for i, n in enumerate(blocks):
            channels += n * growth_rate
            widths.append(channels)
            channels = channels // 2 if i < len(blocks) - 1 else channels
        self.feature_channels = tuple(widths)
        self._finish(num_classes, drop_rate, classifier_init)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the four dense blocks: strides 4, 8, 16, 32 (the last after the final BatchNorm
        and ReLU, as the classifier sees it)."""
        features = []
        for name, module in self.features.named_children():
            x = module(x)
            if name.startswith("denseblock") and name != "denseblock4":
                features.append(x)
        features.append(F.relu(x))
        return features


def resnet50(**kwargs) -> ResNet:
    """ResNet-50: 25.6 M parameters, 4.09 GMACs at 224."""
    return ResNet((3, 4, 6, 3), **kwargs)


def resnet101(**kwargs) -> ResNet:
    """ResNet-101: 44.5 M parameters, 7.80 GMACs at 224."""
    return ResNet((3, 4, 23, 3), **kwargs)


def resnet152(**kwargs) -> ResNet:
    """ResNet-152: 60.2 M parameters, 11.51 GMACs at 224."""
    return ResNet((3, 8, 36, 3), **kwargs)


def densenet121(**kwargs) -> DenseNet:
    """DenseNet-121: 8.0 M parameters, 2.83 GMACs at 224."""
    return DenseNet(32, (6, 12, 24, 16), 64, **kwargs)


def densenet161(**kwargs) -> DenseNet:
    """DenseNet-161: 28.7 M parameters, 7.73 GMACs at 224."""
    return DenseNet(48, (6, 12, 36, 24), 96, **kwargs)


def densenet169(**kwargs) -> DenseNet:
    """DenseNet-169: 14.1 M parameters, 3.36 GMACs at 224."""
    return DenseNet(32, (6, 12, 32, 32), 64, **kwargs)


def densenet201(**kwargs) -> DenseNet:
    """DenseNet-201: 20.0 M parameters, 4.29 GMACs at 224."""
    return DenseNet(32, (6, 12, 48, 32), 64, **kwargs)
