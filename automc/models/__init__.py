"""Model zoo: ``create(name)`` for CIFAR-style models, tiny ``test_*`` models and ``tv:<name>``.

Importing this package registers the built-in models (:mod:`automc.models.cifar`) and the
tiny test models (:mod:`automc.testing.models`) in :data:`REGISTRY`.

Example::

    from automc import models
    net = models.create("resnet20", num_classes=10)
    net = models.create("tv:resnet18", num_classes=100, weights="resnet18_c100.pt")
"""

from __future__ import annotations

import automc.models.cifar  # noqa: F401  (registers resnet20, resnet56, vgg16, mobilenetv2, digits_cnn)
import automc.testing.models  # noqa: F401  (registers the test_* models)
from automc.models._registry import (
    PREFIX_FORMS,
    REGISTRY,
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
    "PREFIX_FORMS",
    "REGISTRY",
    "TV_PREFIX",
    "create",
    "describe",
    "load_weights",
    "names",
    "read_state_dict",
    "register",
    "torchvision_names",
]
