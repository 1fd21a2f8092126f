"""Pre-activation bottleneck and the stage containers FishNet is built from."""
from __future__ import annotations

import torch
from torch import nn


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class Bottleneck(nn.Module):
    """Pre-activation bottleneck: (BN-ReLU-conv) x 3 plus a residual.

    ``mode="norm"`` projects the residual when the shape changes; ``mode="up"`` never
    projects and instead sums the input's channels in groups of ``k`` (k=1: identity),
    which is how the up-sampling body shrinks channels without extra parameters.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        mode: str = "norm",
        k: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if mode not in ("norm", "up"):
            raise ValueError(f"Bottleneck mode must be 'norm' or 'up', got {mode!r}")
        if mode == "up" and in_ch != out_ch * k:
            raise ValueError(f"mode 'up' needs in_ch == out_ch * k, got {in_ch} != {out_ch} * {k}")
        mid = out_ch // 4
        self.mode, self.k = mode, k
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if mode == "norm" and (in_ch != out_ch or stride != 1):
            self.shortcut = nn.Sequential(*_bn_relu(in_ch), nn.Conv2d(in_ch, out_ch, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The pre-activations must not overwrite x: the residual still needs it.
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        residual = self._residual(x)
        if torch.is_grad_enabled() or out.dtype != residual.dtype:
            # Training sums out of place: at tiny spatial sizes torch's add can pick another
            # memory layout than conv3's, which changes BN's rounding downstream, so an in-place
            # sum would change training results.
            return out + residual
        return out.add_(residual)  # inference (types agree, not autocast): no new tensor

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            return self.shortcut(x)
        if self.mode == "up" and self.k > 1:
            # Sums of k adjacent channels. Strided channel slices keep a channels_last input
            # channels_last; a reshape to (N, C/k, k, H, W) would copy it to NCHW first.
            out = x[:, 0::self.k]
            for i in range(1, self.k):
                out = out + x[:, i::self.k]
            return out
        return x


def res_stage(in_ch: int, out_ch: int, n: int, mode: str = "norm", k: int = 1, dilation: int = 1) -> nn.Sequential:
    """``n`` bottlenecks; only the first changes channels, all share the dilation."""
    blocks = [Bottleneck(in_ch, out_ch, mode=mode, k=k, dilation=dilation)]
    blocks += [Bottleneck(out_ch, out_ch, dilation=dilation) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


class DownStage(nn.Module):
    """Tail stage: residual blocks, then 2x2 max pooling."""

    def __init__(self, in_ch: int, out_ch: int, n: int) -> None:
        super().__init__()
        self.blocks = res_stage(in_ch, out_ch, n)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(x))


class Bridge(nn.Module):
    """Between tail and body: channel expansion, residual blocks and SE-style gating."""

    def __init__(self, in_ch: int, n: int) -> None:
        super().__init__()
        half, wide = in_ch // 2, in_ch * 2
        self.reduce = nn.Sequential(*_bn_relu(in_ch), nn.Conv2d(in_ch, half, 1, bias=False), *_bn_relu(half))
        self.expand = nn.Conv2d(half, wide, 1, bias=True)
        self.blocks = res_stage(wide, in_ch, n)
        self.se = nn.Sequential(
            *_bn_relu(wide),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(wide, in_ch // 16, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch // 16, in_ch, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.expand(self.reduce(x))
        att = self.se(s)
        return self.blocks(s) * att + att


class FishStage(nn.Module):
    """Body or head stage: a trunk resampled to the skip feature's size, concatenated
    with a transfer branch of the skip feature (trunk first)."""

    def __init__(self, trunk: nn.Module, skip_ch: int, n_transfer: int, upsample: bool) -> None:
        super().__init__()
        self.trunk = trunk
        self.transfer = res_stage(skip_ch, skip_ch, n_transfer)
        self.upsample = upsample
        self.pool = None if upsample else nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        t = self.trunk(x)
        if self.upsample:
            # Resampling to the skip's exact size (not a fixed 2x) keeps odd input sizes
            # working; at multiples of 32 it is exactly nearest-neighbour 2x.
            t = nn.functional.interpolate(t, size=skip.shape[-2:], mode="nearest")
        elif self.pool is not None:
            t = self.pool(t)
        return torch.cat([t, self.transfer(skip)], dim=1)
