"""CIFAR-style model zoo for 32x32 inputs: ResNet-20/56, VGG-16 (BN), MobileNetV2, a digits CNN.

All models end in global average pooling, so they also run on other input sizes (VGG-16
needs at least 32x32 for its five max-pools), and use BatchNorm after every convolution (the proxy evaluator recalibrates BN statistics).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from automc.models._registry import register


def _init(model: nn.Module) -> nn.Module:
    """Kaiming-normal convs and unit BatchNorm; linears keep PyTorch's default init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with an identity (or 1x1 conv+BN projection) shortcut."""

    def __init__(self, *, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. (2016) CIFAR ResNet: 3 stages of 16/32/64 channels, ``6n+2`` layers.

    Caveat: the two downsampling blocks use option-B shortcuts (1x1 conv + BN) instead
    of the paper's option A (strided identity zero-padded to the wider width). A
    zero-pad shortcut couples channels of different widths through ``F.pad``, which
    Torch-Pruning's DependencyGraph treats as element-wise: pruning a residual stage then
    yields mismatched shapes at the add. Option B prunes cleanly and costs 2.8k extra
    parameters on ResNet-20 (1% of 0.27M); identity shortcuts are unchanged.
    """

    def __init__(self, *, depth: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes=in_planes, planes=planes, stride=stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(self.pool(out), 1))


@register("resnet20")
def resnet20(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-20 (He et al. 2016; 0.27M params, 41M MACs at 32x32; option-B downsampling shortcuts)."""
    return CifarResNet(depth=20, num_classes=num_classes, in_channels=in_channels)


@register("resnet56")
def resnet56(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-56 (He et al. 2016; 0.86M params, 126M MACs at 32x32; option-B downsampling shortcuts)."""
    return CifarResNet(depth=56, num_classes=num_classes, in_channels=in_channels)


VGG16_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


class CifarVGG(nn.Module):
    """VGG with BatchNorm for 32x32 inputs: conv-BN-ReLU stacks, max pooling, one linear classifier."""

    def __init__(self, *, cfg: Sequence[int | str], num_classes: int, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [
                    nn.Conv2d(c, int(v), 3, padding=1, bias=False),
                    nn.BatchNorm2d(int(v)),
                    nn.ReLU(inplace=True),
                ]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register("vgg16")
def vgg16(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CIFAR VGG-16 with BatchNorm (13 convs + 1 linear; 14.7M params, 313M MACs at 32x32)."""
    return CifarVGG(cfg=VGG16_CFG, num_classes=num_classes, in_channels=in_channels)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear project; residual when shapes match."""

    def __init__(self, *, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_planes * expansion
        self.use_residual = stride == 1 and in_planes == out_planes
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [
                nn.Conv2d(in_planes, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            ]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


# (expansion, out channels, blocks, first stride); strides of the stem and of the
# 24-channel stage are 1 instead of 2 for 32x32 inputs, as in common CIFAR ports.
MOBILENETV2_CFG = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class CifarMobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) adapted to 32x32 inputs (total stride 8 instead of 32)."""

    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU6(inplace=True),
        )
        blocks: list[nn.Module] = []
        c = 32
        for t, out, n, s in MOBILENETV2_CFG:
            for i in range(n):
                blocks.append(
                    InvertedResidual(in_planes=c, out_planes=out, expansion=t, stride=s if i == 0 else 1)
                )
                c = out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Conv2d(c, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(inplace=True)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.features(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(out), 1))


@register("mobilenetv2")
def mobilenetv2(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CIFAR MobileNetV2 (stride-1 stem and 24-channel stage; 2.24M params, 88.0M MACs at 32x32)."""
    return CifarMobileNetV2(num_classes=num_classes, in_channels=in_channels)


class DigitsCNN(nn.Module):
    """Three conv-BN-ReLU-maxpool stages, 2x2 average pool, flatten, two linears."""

    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for width in (16, 32, 64):
            layers += [
                nn.Conv2d(c, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            layers.append(nn.MaxPool2d(2))
            c = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(c * 4, 128)
        self.fc2 = nn.Linear(128, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.flatten(self.pool(self.features(x)), 1)
        return self.fc2(F.relu(self.fc1(out)))


@register("digits_cnn")
def digits_cnn(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Small CNN for digits (3 convs 16/32/64 + flatten of 2x2 + 2 linears; 58k params, 2.9M MACs)."""
    return DigitsCNN(num_classes=num_classes, in_channels=in_channels)
