"""Key and value encoders.

The key encoder sees only the frame, so its output is computed once per frame and serves both as
the query and, when the frame enters memory, as the memory key. The value encoder sees the frame
and one object's mask, so it runs once per object (batched) for memory frames only.

Two families: STCN's (ResNet-50 keys, ResNet-18 values, state-dict names of the official code) and a
light one (MobileNetV2 trunks to stride 16). ``pretrained=True`` asks torchvision for ImageNet
weights (downloaded by torchvision, or read from ``$TORCH_HOME/hub/checkpoints``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import (
    MobileNet_V2_Weights,
    ResNet18_Weights,
    ResNet50_Weights,
    mobilenet_v2,
    resnet18,
    resnet50,
)

from avvos.model.blocks import FeatureFusionBlock


class KeyEncoder(nn.Module):
    """torchvision ResNet-50 trunk to stride 16 (``layer4`` and ``fc`` dropped).

    Input (B, 3, H, W) normalised RGB; output ``(f16, f8, f4)`` with 1024, 512 and 256 channels.
    """

    out_channels = (1024, 512, 256)

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        trunk = resnet50(weights=ResNet50_Weights.IMAGENET1K_V1 if pretrained else None)
        self.conv1 = trunk.conv1
        self.bn1 = trunk.bn1
        self.relu = trunk.relu
        self.maxpool = trunk.maxpool
        self.res2 = trunk.layer1
        self.layer2 = trunk.layer2
        self.layer3 = trunk.layer3

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f16, f8, f4


class MobileKeyEncoder(nn.Module):
    """torchvision MobileNetV2 trunk to stride 16: ``(f16, f8, f4)`` with 96, 32 and 24 channels."""

    out_channels = (96, 32, 24)

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        features = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1 if pretrained else None).features
        self.stage4 = features[0:4]
        self.stage8 = features[4:7]
        self.stage16 = features[7:14]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f4 = self.stage4(image)
        f8 = self.stage8(f4)
        return self.stage16(f8), f8, f4


def build_key_encoder(name: str, pretrained: bool = False) -> KeyEncoder | MobileKeyEncoder:
    return KeyEncoder(pretrained) if name == "resnet50" else MobileKeyEncoder(pretrained)


class KeyProjection(nn.Module):
    """3×3 conv from the stride-16 features to the matching key (no normalisation)."""

    def __init__(self, in_dim: int, key_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Conv2d(in_dim, key_dim, 3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.key_proj(x)


class BasicBlock(nn.Module):
    """ResNet basic block whose convs carry biases (STCN's modified ResNet-18)."""

    def __init__(self, in_dim: int, out_dim: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_dim)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_dim)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_dim != out_dim:
            self.downsample = nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, stride=stride), nn.BatchNorm2d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(out + skip)


def _stage(in_dim: int, out_dim: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_dim, out_dim, stride), BasicBlock(out_dim, out_dim))


def _widen_rgb_conv(weight: torch.Tensor, extra: int, orthogonal: bool) -> torch.Tensor:
    """Append ``extra`` input channels to an RGB conv weight: orthogonal init (STCN training) or zeros."""
    added = weight.new_zeros(weight.shape[0], extra, *weight.shape[2:])
    if orthogonal:
        nn.init.orthogonal_(added)
    return torch.cat([weight, added], dim=1)


class ValueEncoder(nn.Module):
    """ResNet-18 trunk (to stride 16) on ``[image, mask, others]`` fused with the key features.

    ``mask`` is one object's probability map, ``others`` the sum of the other objects' maps.
    Output: the memory value (K, value_dim, H/16, W/16).
    """

    def __init__(
        self, key_feature_dim: int = 1024, value_dim: int = 512, use_cbam: bool = True, pretrained: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(5, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _stage(64, 64, 1)
        self.layer2 = _stage(64, 128, 2)
        self.layer3 = _stage(128, 256, 2)
        self.fuser = FeatureFusionBlock(256 + key_feature_dim, value_dim, use_cbam)
        if pretrained:
            self._load_imagenet()

    def _load_imagenet(self) -> None:
        """Copy torchvision's ImageNet ResNet-18 weights; the two extra input channels are orthogonal."""
        source = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1).state_dict()
        own = self.state_dict()
        for key, value in source.items():
            if key == "conv1.weight":
                own[key] = _widen_rgb_conv(value, 2, orthogonal=True)
            elif key in own and own[key].shape == value.shape:
                own[key] = value
        self.load_state_dict(own)

    def forward(
        self, image: torch.Tensor, key_f16: torch.Tensor, mask: torch.Tensor, others: torch.Tensor
    ) -> torch.Tensor:
        x = torch.cat([image, mask, others], dim=1)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fuser(x, key_f16)


class MobileValueEncoder(nn.Module):
    """MobileNetV2 trunk to stride 16 (96 channels) on ``[image, mask, others]``, fused with key features."""

    def __init__(
        self, key_feature_dim: int = 96, value_dim: int = 128, use_cbam: bool = True, pretrained: bool = False
    ) -> None:
        super().__init__()
        features = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1 if pretrained else None).features
        stem = features[0][0]
        conv = nn.Conv2d(5, stem.out_channels, 3, stride=2, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(_widen_rgb_conv(stem.weight, 2, orthogonal=True))
        features[0][0] = conv
        self.trunk = features[0:14]
        self.fuser = FeatureFusionBlock(96 + key_feature_dim, value_dim, use_cbam)

    def forward(
        self, image: torch.Tensor, key_f16: torch.Tensor, mask: torch.Tensor, others: torch.Tensor
    ) -> torch.Tensor:
        return self.fuser(self.trunk(torch.cat([image, mask, others], dim=1)), key_f16)


def build_value_encoder(
    name: str, key_feature_dim: int, value_dim: int, use_cbam: bool, pretrained: bool = False
) -> ValueEncoder | MobileValueEncoder:
    cls = ValueEncoder if name == "resnet18" else MobileValueEncoder
    return cls(key_feature_dim, value_dim, use_cbam, pretrained)
