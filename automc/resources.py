"""Finds search spaces and device profiles: a path, a file in the current directory, or a shipped one.

The shipped files live at the top of the source tree (``search_spaces/``, ``hw_profiles/``)
and are installed as the data packages ``automc.search_spaces`` and ``automc.hw_profiles``
(``setup.py`` maps them), so ``importlib.resources`` finds them in an editable checkout and
in an installed wheel alike. ``hw_profiles`` holds device profiles and energy tables.

A name or path is resolved in this order:
    1. an existing file, or text that looks like a path (a ``.yaml``/``.yml`` suffix or a
       folder separator): returned as given, so its loader reports a missing file;
    2. ``<name>.yaml`` in ``./search_spaces`` resp. ``./hw_profiles`` of the current
       directory (where ``automc profile`` writes a measured profile by default);
    3. the shipped ``<name>.yaml``.

An unknown name is one ``AutomcError`` listing the names that would resolve. Standard library only.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from automc.errors import AutomcError

SPACES_PACKAGE = "automc.search_spaces"
PROFILES_PACKAGE = "automc.hw_profiles"
SPACES_FOLDER = "search_spaces"
PROFILES_FOLDER = "hw_profiles"
_SUFFIX = ".yaml"


def _as_path(item: Traversable) -> Path:
    if isinstance(item, Path):
        return item
    raise AutomcError(
        f"{item}: automc's shipped files must be installed as plain files, not inside an archive"
    )


def _shipped(package: str) -> dict[str, Path]:
    """Shipped ``<name>.yaml`` files of a data package, by name."""
    root = resources.files(package)
    files = {f.name[: -len(_SUFFIX)]: f for f in root.iterdir() if f.name.endswith(_SUFFIX) and f.is_file()}
    return {name: _as_path(files[name]) for name in sorted(files)}


def _local(folder: str) -> dict[str, Path]:
    """``<name>.yaml`` files in ``folder`` of the current directory, by name."""
    here = Path.cwd() / folder
    if not here.is_dir():
        return {}
    return {f.stem: f for f in sorted(here.glob(f"*{_SUFFIX}")) if f.is_file()}


def _mentions(path: Path, schema: str | None) -> bool:
    if schema is None:
        return True
    try:
        with path.open("rb") as f:
            head = f.read(2000)
    except OSError:
        return False
    return schema in head.decode("utf-8", errors="replace")


def _candidates(folder: str, package: str) -> dict[str, Path]:
    """Every name that resolves, to the file it resolves to (current directory first)."""
    return {**_shipped(package), **_local(folder)}


def _looks_like_path(text: str) -> bool:
    return Path(text).is_file() or Path(text).suffix in (".yaml", ".yml") or "/" in text or "\\" in text


def _find(name_or_path: str | Path, *, folder: str, package: str, what: str, schema: str | None) -> Path:
    text = str(name_or_path)
    if _looks_like_path(text):
        return Path(text)
    found = _candidates(folder, package)
    if text in found:
        return found[text]
    known = [name for name, path in found.items() if _mentions(path, schema)]
    raise AutomcError(
        f"unknown {what} {text!r} (known: {', '.join(sorted(known)) or 'none'}; or give a path to a YAML file)"
    )


def find_space(name_or_path: str | Path) -> Path:
    """The search-space file for a path or a name (``joint`` -> the shipped ``joint.yaml``).

    Raises:
        AutomcError: a name that is neither in ``./search_spaces`` nor shipped (the message
            lists the known names).
    """
    return _find(name_or_path, folder=SPACES_FOLDER, package=SPACES_PACKAGE, what="search space", schema=None)


def find_profile(
    name_or_path: str | Path, *, schema: str | None = None, what: str = "device profile"
) -> Path:
    """The ``hw_profiles`` file (device profile or energy table) for a path or a name.

    Args:
        name_or_path: a path, or a name such as ``cpu-x86-2core-ort`` or ``energy-45nm``.
        schema: when given, the error for an unknown name lists only the files whose text
            carries this ``schema:`` value (device profiles or energy tables).
        what: what the file is, for the error message.

    Raises:
        AutomcError: a name that is neither in ``./hw_profiles`` nor shipped.
    """
    return _find(name_or_path, folder=PROFILES_FOLDER, package=PROFILES_PACKAGE, what=what, schema=schema)


def shipped_spaces() -> list[str]:
    """Names of the search spaces shipped with automc, sorted."""
    return list(_shipped(SPACES_PACKAGE))


def shipped_profiles(schema: str | None = None) -> list[str]:
    """Names of the shipped ``hw_profiles`` files, sorted; only those carrying ``schema`` when given."""
    return [name for name, path in _shipped(PROFILES_PACKAGE).items() if _mentions(path, schema)]


def profile_names(schema: str | None = None) -> list[str]:
    """Names that :func:`find_profile` resolves (``./hw_profiles`` and shipped), sorted; only those
    carrying ``schema`` when given."""
    found = _candidates(PROFILES_FOLDER, PROFILES_PACKAGE)
    return sorted(name for name, path in found.items() if _mentions(path, schema))
