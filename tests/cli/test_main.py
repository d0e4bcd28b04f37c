"""``automc`` as a process: a closed stdout (``automc list models | head -1``) ends quietly."""

from __future__ import annotations

import subprocess
import sys


def test_closed_stdout_ends_quietly_with_141() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "automc", "list", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # the reader is gone before automc writes a byte
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == "", err


def test_piped_into_head_prints_the_first_line_only() -> None:
    done = subprocess.run(
        f"{sys.executable} -m automc list models | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 1 and done.stderr == ""
