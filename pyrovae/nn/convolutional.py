"""Convolutional networks for image inputs ``(B, C, H, W)``: the encoder and decoder of van den Oord
et al. 2017 (VQ-VAE, §4.1), built from strided convolutions and residual blocks.

The encoder halves the height and width ``downsamplings`` times with 4x4 convolutions of stride 2,
then applies a 3x3 convolution, ``residual_blocks`` residual blocks and a 1x1 convolution to
``out_channels``; the decoder mirrors it with 4x4 transposed convolutions. The paper uses two
downsamplings, two residual blocks and 256 channels; the channel counts are parameters here.
"""

from __future__ import annotations

import torch
from torch import nn


class ImageLayers(nn.Sequential):
    """``nn.Sequential`` over images with any leading batch dimensions: ``(..., C, H, W)``, as Pyro's
    vectorized particles add (``torch.nn.Conv2d`` takes one batch dimension)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 4:
            raise ValueError(f"expected images (..., C, H, W) with a batch dimension, got shape {tuple(x.shape)}")
        batch = x.shape[:-3]
        y = super().forward(x.reshape(-1, *x.shape[-3:]))
        return y.reshape(*batch, *y.shape[1:])


class ResidualBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))``, the residual block of van den Oord et al. 2017 (§4.1)."""

    def __init__(self, channels: int, hidden_channels: int):
        super().__init__()
        _check_positive(channels=channels, hidden_channels=hidden_channels)
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, hidden_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def residual_stack(channels: int, hidden_channels: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` :class:`ResidualBlock`\\ s followed by a ReLU (none when ``num_blocks`` is 0)."""
    if num_blocks < 0:
        raise ValueError(f"the number of residual blocks must be at least 0, got {num_blocks}")
    blocks: list[nn.Module] = [ResidualBlock(channels, hidden_channels) for _ in range(num_blocks)]
    return nn.Sequential(*blocks, nn.ReLU()) if blocks else nn.Sequential()


def convolutional_encoder(in_channels: int, hidden_channels: int, out_channels: int, downsamplings: int = 2,
                          residual_blocks: int = 2, residual_channels: int | None = None) -> ImageLayers:
    """``(..., in_channels, H, W) -> (..., out_channels, H / 2^downsamplings, W / 2^downsamplings)``.

    Every strided convolution but the last has ``hidden_channels // 2`` outputs (at least 1), as in
    the paper's released encoder; ``residual_channels`` (default ``hidden_channels``) is the width
    inside the residual blocks. The output is linear (no activation): it is the encoder output
    ``E(x)`` a vector quantizer reads.
    """
    _check_positive(in_channels=in_channels, hidden_channels=hidden_channels, out_channels=out_channels,
                    downsamplings=downsamplings)
    residual_channels = hidden_channels if residual_channels is None else residual_channels
    layers: list[nn.Module] = []
    channels = in_channels
    for step in range(downsamplings):
        width = hidden_channels if step == downsamplings - 1 else max(hidden_channels // 2, 1)
        layers += [nn.Conv2d(channels, width, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        channels = width
    layers.append(nn.Conv2d(channels, hidden_channels, kernel_size=3, padding=1))
    layers += list(residual_stack(hidden_channels, residual_channels, residual_blocks))
    if not residual_blocks:
        layers.append(nn.ReLU())
    layers.append(nn.Conv2d(hidden_channels, out_channels, kernel_size=1))
    return ImageLayers(*layers)


def convolutional_decoder(in_channels: int, hidden_channels: int, out_channels: int, upsamplings: int = 2,
                          residual_blocks: int = 2, residual_channels: int | None = None) -> ImageLayers:
    """``(..., in_channels, h, w) -> (..., out_channels, h * 2^upsamplings, w * 2^upsamplings)``, the
    mirror of :func:`convolutional_encoder`; the output is linear (a likelihood head reads it)."""
    _check_positive(in_channels=in_channels, hidden_channels=hidden_channels, out_channels=out_channels,
                    upsamplings=upsamplings)
    residual_channels = hidden_channels if residual_channels is None else residual_channels
    layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=1)]
    layers += list(residual_stack(hidden_channels, residual_channels, residual_blocks))
    if not residual_blocks:
        layers.append(nn.ReLU())
    channels = hidden_channels
    for step in range(upsamplings):
        last = step == upsamplings - 1
        width = out_channels if last else max(hidden_channels // 2, 1)
        layers.append(nn.ConvTranspose2d(channels, width, kernel_size=4, stride=2, padding=1))
        if not last:
            layers.append(nn.ReLU())
        channels = width
    return ImageLayers(*layers)


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
