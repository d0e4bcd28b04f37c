"""Model zoo: ``create(name)`` for CIFAR-style models, tiny ``test_*`` models and ``tv:<name>``.

Example::

    from automc import models
    net = models.create("resnet20", num_classes=10)
    net = models.create("tv:resnet18", num_classes=100, weights="resnet18_c100.pt")
"""

from __future__ import annotations

from automc.models._registry import (
    TV_PREFIX,
    create,
    describe,
    load_weights,
    names,
    read_state_dict,
    register,
    torchvision_names,
)

__all__ = [
    "TV_PREFIX",
    "create",
    "describe",
    "load_weights",
    "names",
    "read_state_dict",
    "register",
    "torchvision_names",
]
