"""A user's own model, in no registry: a residual add around a depthwise-separable block.

Imported by the tests as ``user_pkg.netdef`` with ``tests/models`` on ``sys.path`` (or
``PYTHONPATH`` for the command line), the way a user's package is found. When
``$USER_PKG_IMPORT_LOG`` names a file, importing this module appends a line to it, so a
test can tell whether a command imported it.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

if os.environ.get("USER_PKG_IMPORT_LOG"):
    with open(os.environ["USER_PKG_IMPORT_LOG"], "a", encoding="utf-8") as log:
        log.write("imported user_pkg.netdef\n")


class SeparableResNet(nn.Module):
    """Stem conv, a residual depthwise 3x3 + pointwise 1x1 block, a strided conv, a linear head."""

    def __init__(self, width: int = 8, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
        self.dw_bn = nn.BatchNorm2d(width)
        self.pw = nn.Conv2d(width, width, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.down_bn = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        out = F.relu(self.dw_bn(self.dw(x)))
        x = F.relu(self.pw_bn(self.pw(out)) + x)
        x = F.relu(self.down_bn(self.down(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_net(width: int = 8) -> nn.Module:
    """The factory ``--model user_pkg.netdef:build_net`` names."""
    return SeparableResNet(width=width)


def broken_factory() -> nn.Module:
    """A factory that raises, as user code can."""
    raise ValueError("width must be even")


def not_a_module() -> object:
    """A factory that returns something other than an ``nn.Module``."""
    return {"width": 8}
