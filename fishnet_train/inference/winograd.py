"""Winograd F(4x4, 3x3) convolution for CPU inference.

PyTorch's CPU convolutions (oneDNN) compute 3x3 convolutions directly, and FishNet's wide 3x3
layers already run at the CPU's fp32 peak that way; the only way left to make them faster is
less arithmetic. Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016) computes each
4x4 output tile from a 6x6 input tile with 36 multiplications per channel pair instead of 144:
the convolution becomes 36 independent matrix products (one batched GEMM) between transformed
input tiles and transformed weights, with cheap linear maps before and after. Results equal
the direct convolution up to float rounding: about 1e-5 of the output's scale against the
direct convolution's 1e-6 (tests bound it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_CHANNELS = 128  # below this the transforms cost more than the smaller GEMM saves (measured)


def _transforms() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B^T (6x6), G (6x3) and A^T (4x6) for the interpolation points 0, 1, -1, 2, -2 and infinity."""
    b_t = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
    g = torch.tensor([[6, 0, 0], [-4, -4, -4], [-4, 4, -4], [1, 2, 4], [1, -2, 4], [0, 0, 24]],
                     dtype=torch.float64) / 24
    a_t = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                       dtype=torch.float64)
    return b_t, g, a_t


def winograd_eligible(conv: nn.Module) -> bool:
    """A 3x3, stride-1, 'same'-padded, undilated, ungrouped fp32 convolution on the CPU, wide enough to gain."""
    return (
        type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
        and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
        and conv.padding_mode == "zeros" and conv.weight.device.type == "cpu"
        and conv.weight.dtype == torch.float32 and min(conv.in_channels, conv.out_channels) >= MIN_CHANNELS
    )


def _tiles(size: int) -> int:
    return (size + 3) // 4


def _gains(height: int, width: int) -> bool:
    # Whole tiles cover the map; on small maps padding wastes most of the saving (1x1, 2x2 maps
    # would cost more than direct). Ask for under 40 % of direct's multiplications.
    return 36 * _tiles(height) * _tiles(width) * 5 <= 2 * 9 * height * width


class WinogradConv2d(nn.Module):
    """An inference-only stand-in for an eligible ``nn.Conv2d`` (see ``winograd_eligible``).

    It keeps the convolution and runs it directly where Winograd does not apply: autograd
    recording, autocast, another dtype or device, or a map too small to gain.
    """

    weight_tiles: torch.Tensor
    input_transform: torch.Tensor
    output_transform: torch.Tensor

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not winograd_eligible(conv):
            raise ValueError(f"Winograd F(4x4, 3x3) needs an eligible 3x3 convolution, got {conv}")
        self.conv = conv
        b_t, g, a_t = _transforms()
        weight = conv.weight.detach().double()
        tiles = torch.einsum("ua,kcab,vb->uvck", g, weight, g)  # G w G^T for every channel pair
        self.register_buffer("weight_tiles", tiles.reshape(36, conv.in_channels, conv.out_channels).float(),
                             persistent=False)
        self.register_buffer("input_transform", torch.kron(b_t, b_t).float(), persistent=False)
        self.register_buffer("output_transform", torch.kron(a_t, a_t).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._applies(x):
            return self.conv(x)
        return winograd_conv3x3(x, self.weight_tiles, self.conv.bias, self.input_transform, self.output_transform)

    def _applies(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and _gains(x.shape[-2], x.shape[-1])
        )


def winograd_conv3x3(
    x: torch.Tensor,
    weight_tiles: torch.Tensor,
    bias: torch.Tensor | None,
    input_transform: torch.Tensor,
    output_transform: torch.Tensor,
) -> torch.Tensor:
    """``conv2d(x, w, bias, padding=1)`` by F(4x4, 3x3). ``weight_tiles``: (36, C_in, C_out),
    the transformed weights; the transforms are kron(B^T, B^T) and kron(A^T, A^T). The output
    has the input's memory format."""
    n, c, h, w = x.shape
    th, tw = _tiles(h), _tiles(w)
    # NHWC, zero-padded to whole 6x6 tiles overlapping by 2: one 1-px border, the rest to fill.
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 4 * tw + 1 - w, 1, 4 * th + 1 - h))
    s_n, s_h, s_w, s_c = padded.stride()
    tiles = padded.as_strided((6, 6, n, th, tw, c), (s_h, s_w, s_n, 4 * s_h, 4 * s_w, s_c))
    positions = n * th * tw
    k = weight_tiles.shape[2]
    transformed = (input_transform @ tiles.reshape(36, positions * c)).view(36, positions, c)
    products = torch.bmm(transformed, weight_tiles)
    if bias is not None:
        # A^T's column for the point 1 is all ones, so adding the bias to that one of the 36
        # products adds it to all 16 outputs of every tile: 1/36 of a pass instead of a pass.
        products[1 * 6 + 1].add_(bias)
    out_tiles = (output_transform @ products.view(36, positions * k)).view(4, 4, n, th, tw, k)
    out_tiles = out_tiles.permute(2, 3, 0, 4, 1, 5)  # (n, th, 4, tw, 4, k)
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((n, k, h, w), dtype=x.dtype, device=x.device, memory_format=layout)
    out_nhwc = out.permute(0, 2, 3, 1)
    if (4 * th, 4 * tw) == (h, w):
        out_nhwc = out_nhwc.unflatten(2, (tw, 4)).unflatten(1, (th, 4))
    else:  # the last tiles overhang the map: crop them
        out_tiles = out_tiles.reshape(n, 4 * th, 4 * tw, k)[:, :h, :w]
    out_nhwc.copy_(out_tiles)
    return out
