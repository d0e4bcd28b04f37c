"""Models from the user's own code: ``pkg.module:factory`` import paths and class paths.

A user model is named by an import path ``package.module:attribute`` where the attribute
is a class or a function returning an ``nn.Module``; it is called with the keyword
arguments the user gives (``--model-kwargs '{"width": 2}'``) and nothing else.

The same import paths name the user's functions on the command line: ``--train-step
pkg.mod:step`` and ``--evaluate pkg.mod:accuracy`` (:func:`resolve`).

Code is imported only from a path the user typed (``--model`` on the command line,
``automc.search(model="pkg.mod:factory")`` or :func:`build` called in Python), never from
a data file: ``automc.models.create``, a config file's ``base.model`` and a saved model
naming an import path are refused (:func:`refuse_from_data`).

Example::

    from automc.models import user
    net = user.build("my_pkg.models:build_net", {"width": 2})
    user.class_path(net)  # 'my_pkg.models:Net', recorded as the base model's name
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from typing import Any

from automc.errors import AutomcError

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")


def is_import_path(name: str) -> bool:
    """Whether ``name`` has the form ``package.module:attribute`` (``tv:<name>`` does not count)."""
    return not name.startswith("tv:") and bool(_IMPORT_PATH.match(name))


def parse_kwargs(text: str | None, flag: str = "--model-kwargs") -> dict[str, Any]:
    """The keyword arguments of a factory from JSON text (``None`` or empty: none).

    Raises:
        AutomcError: not JSON, or not a JSON object.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise AutomcError(f"{flag}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, dict):
        raise AutomcError(f"{flag}: must be a JSON object such as '{{\"width\": 2}}', got {text!r}")
    return value


def resolve(path: str, what: str = "model") -> Any:
    """Import the module of ``path`` (``pkg.mod:attr``) and return the attribute (callable).

    ``what`` names the path in the messages: ``model`` (a factory), or a flag such as
    ``--train-step`` (a function).

    Raises:
        AutomcError: a malformed path, a module that cannot be imported (naming the
            exception), a missing attribute, or one that is not callable.
    """
    attribute = "factory" if what == "model" else "function"
    if not is_import_path(path):
        raise AutomcError(f"{what} {path!r}: an import path has the form package.module:{attribute}")
    module_name, attr = path.split(":", 1)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or module_name
        raise AutomcError(
            f"{what} {path!r}: cannot import module {missing!r} (is its folder on PYTHONPATH?)"
        ) from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing
        raise AutomcError(f"{what} {path!r}: importing {module_name!r} raised {_one_line(e)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AutomcError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise AutomcError(f"{what} {path!r}: {attr!r} is a {type(obj).__name__}, not a class or function")
    return obj


def build(path: str, kwargs: Mapping[str, Any] | None = None) -> Any:
    """Import ``path`` and call it with ``kwargs``; the ``nn.Module`` it returns.

    Raises:
        AutomcError: see :func:`resolve`; the factory raised (naming the exception), or
            returned something that is not an ``nn.Module``.
    """
    from torch import nn

    factory = resolve(path)
    try:
        net = factory(**dict(kwargs or {}))
    except Exception as e:  # noqa: BLE001 - any failure of user code is reported in one line
        raise AutomcError(f"model {path!r}: the factory raised {_one_line(e)}") from None
    if not isinstance(net, nn.Module):
        raise AutomcError(
            f"model {path!r}: the factory returned a {type(net).__name__}, not a torch nn.Module"
        )
    return net


def from_flag(
    name: str,
    kwargs_text: str | None = None,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    weights: str | None = None,
) -> Any:
    """The model a command's ``--model`` flag names: the user's code for an import path
    (built with the ``--model-kwargs`` JSON ``kwargs_text``: the user typed both), else
    ``automc.models.create``; ``weights`` (a state_dict file) loaded into it either way."""
    from automc import models

    if not is_import_path(name):
        return models.create(name, num_classes=num_classes, in_channels=in_channels, weights=weights)
    net = build(name, parse_kwargs(kwargs_text))
    return models.load_weights(net, weights) if weights else net


def class_path(module: Any) -> str:
    """``package.module:ClassName`` of a module object: how a search records a user's base model."""
    cls = type(module)
    return f"{cls.__module__}:{cls.__qualname__}"


def refuse_from_data(name: str, where: str) -> None:
    """Refuse an import path read from data (a config file, a stored study): code is only
    imported from a path the user gives as ``--model`` or in Python.

    Raises:
        AutomcError: ``name`` is an import path.
    """
    if is_import_path(name):
        raise AutomcError(
            f"{where}: model {name!r} is user code; automc imports it only when you pass it "
            f"yourself (--model {name}, or model= in Python), never from a data file"
        )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
