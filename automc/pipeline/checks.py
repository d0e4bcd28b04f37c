"""Cheap checks of a search's outputs, storage and study before anything is trained or written.

:func:`search <automc.pipeline.run.search>` calls :func:`check_outputs` in its "validate
everything cheap" block: a run folder that is a file or cannot be written, a storage
URL that is malformed, needs a database driver that is not installed or points at a
file that is not a database, a study name that is not a plain name, and a resume that
would mix two runs (:func:`automc.search.storage.resume_mismatch`) each end in one
``AutomcError`` line, before the base model trains. None of these checks writes to the
storage or the run folder (the writability probe creates and removes one empty file).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import unicodedata
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from automc.errors import AutomcError

MAX_STUDY_NAME = 255
"""Longest study name accepted (a study name also names files next to the storage)."""


def check_study_name(name: str) -> str:
    """``name`` if it is a usable study name; else an ``AutomcError`` naming the problem.

    A study name must be 1-255 characters without path separators or control characters:
    it names the controller-state files written next to the storage.
    """
    if not name:
        raise AutomcError("--study: the study name is empty")
    if len(name) > MAX_STUDY_NAME:
        raise AutomcError(f"--study: the study name has {len(name)} characters (at most {MAX_STUDY_NAME})")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise AutomcError(f"--study {name!r}: a study name cannot contain a path separator")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise AutomcError(f"--study {name!r}: a study name cannot contain control character {bad!r}")
    return name


def _nearest_existing(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_writable_folder(path: str | Path, *, flag: str = "--out") -> Path:
    """``path`` as a folder that exists or can be created and written; else an ``AutomcError``.

    The nearest existing folder of ``path`` gets one empty temporary file, removed at
    once: permission bits do not tell root about read-only file systems.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise AutomcError(f"{flag} {folder}: exists and is not a folder")
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise AutomcError(f"{flag} {folder}: {base} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".automc-probe-", dir=base)
    except OSError as e:
        raise AutomcError(f"{flag} {folder}: cannot write into {base} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(name)
    return folder


def check_storage_url(url: str) -> str:
    """``url`` if automc can open it as an Optuna storage; else an ``AutomcError``.

    Journal files (``*.log``) must be files in a writable folder; RDB URLs must parse,
    name an installed SQLAlchemy dialect and driver, and for SQLite name a file that is
    absent (it will be created) or a SQLite database. Nothing is created or changed.
    """
    where = f"--storage {url}"
    if url.endswith(".log") and "://" not in url:
        path = Path(url)
        if path.exists() and not path.is_file():
            raise AutomcError(f"{where}: exists and is not a file")
        check_writable_folder(path.parent, flag="--storage")
        return url
    try:
        from sqlalchemy import create_engine
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise AutomcError(f"{where}: not a valid storage URL ({first})") from None
    except ImportError as e:
        raise AutomcError(
            f"{where}: the database driver is not installed ({e.name or e}); install it or use sqlite"
        ) from None
    database = engine.url.database
    engine.dispose()
    if engine.url.get_backend_name() == "sqlite":
        if not database or database == ":memory:":
            raise AutomcError(f"{where}: an in-memory SQLite database cannot hold a study; name a file")
        _check_sqlite_file(Path(database), where)
    return url


def _check_sqlite_file(path: Path, where: str) -> None:
    if not path.exists():
        check_writable_folder(path.parent, flag="--storage")
        return
    if not path.is_file():
        raise AutomcError(f"{where}: {path} is not a file")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as con:
            con.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as e:
        raise AutomcError(f"{where}: {path} is not a SQLite database ({e})") from None


def check_outputs(*, out_dir: Path, url: str, study: str) -> None:
    """The run folder, the storage and the study name of a search (see the module docstring)."""
    check_study_name(study)
    check_writable_folder(out_dir)
    check_storage_url(url)


def check_resume(url: str, study: str, meta: Mapping[str, Any]) -> None:
    """Refuse to continue ``study`` in ``url`` when its stored run differs from ``meta``.

    Reads the storage only if it already exists (a missing SQLite or journal file means
    a new study); ``meta`` needs ``config`` (``SearchConfig.to_dict()``) and may carry
    the other keys of :data:`automc.search.storage.RESUME_META`.

    Raises:
        AutomcError: one line naming the first differing field
            (:func:`automc.search.storage.resume_mismatch`).
    """
    from automc.search.storage import resume_mismatch, stored_meta

    old = stored_meta(url, study)
    if old is None:
        return
    problem = resume_mismatch(old, meta)
    if problem:
        raise AutomcError(
            f"cannot resume study {study!r} in {url}: {problem}; "
            "use --new-study or another --study to start a fresh one"
        )


def fresh_study(url: str, study: str) -> str:
    """``study`` if ``url`` has no study of that name, else the first free ``<study>-2``, ``-3``, ..."""
    from automc.search.storage import study_names

    taken = set(study_names(url))
    name, n = study, 1
    while name in taken:
        n += 1
        name = f"{study}-{n}"
    return check_study_name(name)


def run_folder(out_dir: Path, study: str) -> Path:
    """Where a study's run files (config, report, winners) go inside ``--out``.

    ``out_dir`` itself, unless it already holds the run of another study (its
    ``config.yaml`` names another study, or it has a report without one): then
    ``out_dir/<study>``, so two studies sharing an ``--out`` never overwrite each
    other's report. The same study always gets the same folder.
    """
    from automc.config import SearchConfig
    from automc.pipeline.run import CONFIG_FILE, default_study

    config_file = out_dir / CONFIG_FILE
    if config_file.is_file():
        try:
            other = SearchConfig.load(config_file)
        except AutomcError:
            return out_dir / study
        base = other.base.model
        owner = other.output.study or default_study(
            base, other.data.dataset, other.controller.name, other.seed
        )
        return out_dir if owner == study else out_dir / study
    return out_dir / study if (out_dir / "index.html").exists() else out_dir
