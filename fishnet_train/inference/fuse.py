"""Inference-only rewrite: fold each BatchNorm that directly follows a convolution into it, and
on the CPU run the wide 3x3 convolutions by Winograd's F(4x4, 3x3)."""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import densenet as tv_densenet
from torchvision.models import resnet as tv_resnet

from ..models.baselines import ResNet
from ..models.blocks import Bottleneck
from .winograd import WinogradConv2d, winograd_eligible


def _fold_sequential(seq: nn.Sequential) -> None:
    names = list(seq._modules)
    for a, b in zip(names, names[1:]):
        conv, bn = seq._modules[a], seq._modules[b]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.modules.batchnorm._BatchNorm):
            seq._modules[a] = fuse_conv_bn_eval(conv, bn)
            seq._modules[b] = nn.Identity()


def _fold_pair(module: nn.Module, conv: str, bn: str) -> None:
    setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv), getattr(module, bn)))
    setattr(module, bn, nn.Identity())


def _use_winograd(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and winograd_eligible(child):
            setattr(module, name, WinogradConv2d(child))
        else:
            _use_winograd(child)


def fuse_for_inference(model: nn.Module, winograd: bool = True) -> nn.Module:
    """A copy of ``model`` in eval mode with conv->BN pairs folded (outputs equal up to float
    rounding). Pre-activation BNs (BN->ReLU->conv: FishNet's blocks' first, DenseNet's first of each layer
    and its transitions') cannot fold and stay as they are; ResNet's follow their convolutions and all fold.

    ``winograd``: on the CPU, run the 3x3 convolutions with 128+ channels by Winograd
    F(4x4, 3x3) (``winograd.py``; equal up to float rounding). GPU libraries choose their
    own algorithms, so GPU models are left alone either way.
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, Bottleneck):
            _fold_pair(module, "conv1", "bn2")
            _fold_pair(module, "conv2", "bn3")
        elif isinstance(module, tv_resnet.Bottleneck):
            for i in (1, 2, 3):
                _fold_pair(module, f"conv{i}", f"bn{i}")
        elif isinstance(module, ResNet):
            _fold_pair(module, "conv1", "bn1")
        elif isinstance(module, tv_densenet._DenseLayer):  # its 1x1 bottleneck convolution feeds norm2
            _fold_pair(module, "conv1", "norm2")
        elif isinstance(module, nn.Sequential):
            _fold_sequential(module)
    if winograd:
        _use_winograd(fused)
    return fused
