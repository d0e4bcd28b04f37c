"""Tiny models covering the graph patterns automc must handle, registered in the zoo.

Each runs on a ``1x3x16x16`` or ``1x3x32x32`` input in milliseconds and uses BatchNorm
after its convolutions (the proxy evaluator recalibrates BN statistics):

* ``test_tiny``: two convs + BN + linear, the fastest model (engine/pipeline tests).
* ``test_residual``: residual adds, including a strided 1x1 projection shortcut.
* ``test_concat``: ``torch.cat`` of two branches, then ``chunk`` into two halves that
  feed separate convs.
* ``test_depthwise``: depthwise-separable convs (depthwise 3x3 + pointwise 1x1).
* ``test_linear``: an MLP (adaptive pool to 4x4, flatten, three linears with BN1d).

:class:`AttentionNet` (conv stem, self-attention, linear head) is not registered: the zoo
holds only models automc can price, and tests register it to check the refusal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from automc.models._registry import register


def _cbr(cin: int, cout: int, *, stride: int = 1, kernel: int = 3, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyNet(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class ResidualNet(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = _cbr(in_channels, 8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.down_conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.down_bn = nn.BatchNorm2d(16)
        self.proj = nn.Conv2d(8, 16, 1, stride=2, bias=False)
        self.proj_bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(out)) + x)
        x = F.relu(self.down_bn(self.down_conv(x)) + self.proj_bn(self.proj(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ConcatNet(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = _cbr(in_channels, 8)
        self.branch_a = _cbr(8, 8)
        self.branch_b = _cbr(8, 4, kernel=1)
        self.mix = _cbr(12, 16, stride=2)
        self.head_a = _cbr(8, 8)
        self.head_b = _cbr(8, 8)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.mix(torch.cat([self.branch_a(x), self.branch_b(x)], dim=1))
        left, right = torch.chunk(x, 2, dim=1)
        x = torch.cat([self.head_a(left), self.head_b(right)], dim=1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DepthwiseNet(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = _cbr(in_channels, 8)
        self.dw1 = _cbr(8, 8, groups=8)
        self.pw1 = _cbr(8, 16, kernel=1)
        self.dw2 = _cbr(16, 16, stride=2, groups=16)
        self.pw2 = _cbr(16, 16, kernel=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pw2(self.dw2(self.pw1(self.dw1(self.stem(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class LinearNet(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(in_channels * 16, 32)
        self.bn1 = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 16)
        self.bn2 = nn.BatchNorm1d(16)
        self.fc3 = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)
        x = F.relu(self.bn1(self.fc1(x)))
        x = F.relu(self.bn2(self.fc2(x)))
        return self.fc3(x)


class AttentionNet(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = _cbr(in_channels, 8, stride=2)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        mixed, _ = self.attn(tokens, tokens, tokens)
        return self.fc(mixed.mean(1))


@register("test_tiny")
def test_tiny(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Test model: 2 convs + BN + linear (the fastest model, for engine/pipeline tests)."""
    return TinyNet(num_classes=num_classes, in_channels=in_channels)


@register("test_residual")
def test_residual(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Test model: residual adds (identity and strided 1x1 projection shortcut)."""
    return ResidualNet(num_classes=num_classes, in_channels=in_channels)


@register("test_concat")
def test_concat(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Test model: torch.cat of two branches, then chunk into halves feeding separate convs."""
    return ConcatNet(num_classes=num_classes, in_channels=in_channels)


@register("test_depthwise")
def test_depthwise(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Test model: depthwise-separable convs (depthwise 3x3 + pointwise 1x1)."""
    return DepthwiseNet(num_classes=num_classes, in_channels=in_channels)


@register("test_linear")
def test_linear(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Test model: MLP only (adaptive pool to 4x4, flatten, 3 linears with BatchNorm1d)."""
    return LinearNet(num_classes=num_classes, in_channels=in_channels)
