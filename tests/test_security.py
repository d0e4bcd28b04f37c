"""Security: pickle payloads in weights files never run, YAML is only ever safe-loaded,
user strings reaching the HTML report are escaped, and automc opens no network connection.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import automc
from automc import models
from automc.cli import main
from automc.errors import AutomcError
from automc.schema.hw_profile import load_hw_profile
from automc.space import SearchSpace

PACKAGE = Path(automc.__file__).resolve().parent
XSS = "<script>alert(1)"  # no "/": fvcore cannot trace module names containing one
XSS_MODEL = "test_h9_xss"
SEARCH = "--dataset synthetic --space prune --controller random --profile none --finetune-epochs 0 --quiet"

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def write_payload(path: Path, marker: Path, *, saver: str) -> Path:
    obj = {"conv1.weight": torch.zeros(8, 3, 3, 3), "bn1.weight": Payload(marker)}
    if saver == "torch":
        torch.save(obj, path)
    else:
        with path.open("wb") as f:
            pickle.dump(obj, f)
    return path


# --- pickle payloads ------------------------------------------------------------------------


@pytest.mark.parametrize("saver", ["torch", "pickle"])
def test_payload_is_live_when_unpickled_unsafely(tmp_path: Path, saver: str) -> None:
    """Control: the payload file really runs its command under an unsafe load."""
    marker = tmp_path / "pwned"
    path = write_payload(tmp_path / "w.pt", marker, saver=saver)
    if saver == "torch":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("saver", ["torch", "pickle"])
def test_payload_refused_by_every_weights_entry_point(
    home: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], saver: str
) -> None:
    marker = tmp_path / "pwned"
    path = write_payload(tmp_path / "w.pt", marker, saver=saver)
    with pytest.raises(AutomcError, match=re.escape(str(path))):
        models.create("test_tiny", weights=path)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"schema": "automc/plan", "version": 1, "model": "test_tiny", "layers": {}}))
    tiny = ["--model", "test_tiny", "--weights", str(path)]
    commands = {
        "compress": ["compress", *tiny, "--plan", str(plan), "--out", str(tmp_path / "c.pt")],
        "cost": ["cost", *tiny],
        "search": ["search", *tiny, *SEARCH.split(), "--trials", "2", "--out", str(tmp_path / "run")],
    }
    for verb, argv in commands.items():
        assert main(argv) == 2, verb
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and "cannot load weights" in err[0], (verb, err)
    assert not marker.exists(), "the pickle payload ran"
    assert not (tmp_path / "c.pt").exists() and not (tmp_path / "run" / "study.db").exists()


def test_every_torch_load_in_the_package_is_weights_only() -> None:
    calls = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", text):
            depth, end = 0, m.end() - 1
            for end in range(m.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            calls.append((path.name, text[m.start() : end + 1]))
    assert calls, "the package loads weights somewhere"
    unsafe = [(name, call) for name, call in calls if "weights_only=True" not in call]
    assert not unsafe


# --- YAML --------------------------------------------------------------------------------------


def test_package_source_uses_safe_load_only() -> None:
    """No unsafe YAML entry point anywhere; every ``Loader=`` given to PyYAML is one of the two
    loaders of ``automc.schema.common``, and both construct only plain data (SafeConstructor)."""
    import yaml

    from automc.schema import common

    forbidden = re.compile(
        r"yaml\.(unsafe_load|full_load|load_all|unsafe_load_all)\(|UnsafeLoader|FullLoader"
    )
    loader_arg = re.compile(r"yaml\.\w+\(.*Loader\s*=\s*(\w+)")
    lines = [
        (f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}", line)
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
    ]
    assert not [where for where, line in lines if forbidden.search(line)]
    loaders = {m.group(1): where for where, line in lines if (m := loader_arg.search(line))}
    assert loaders and set(loaders) <= {"_SafeLoader", "_StrictLoader"}, loaders
    assert all(where.startswith("schema/common.py") for where in loaders.values())
    for cls in (common._SafeLoader, common._StrictLoader):
        assert issubclass(cls, yaml.constructor.SafeConstructor)
        assert not issubclass(cls, yaml.constructor.FullConstructor)


@pytest.mark.parametrize("loader", ["profile", "space"])
def test_yaml_python_tag_is_refused_and_never_runs(tmp_path: Path, loader: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(
        f"schema: automc/{'hw-profile' if loader == 'profile' else 'search-space'}\nversion: 1\n"
        f'device: !!python/object/apply:os.system ["touch {marker}"]\n',
        encoding="utf-8",
    )
    with pytest.raises(AutomcError, match=re.escape(str(path))):
        if loader == "profile":
            load_hw_profile(path)
        else:
            SearchSpace.load(path)
    assert not marker.exists()


def test_yaml_python_tag_through_the_cli(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8")
    assert main(["cost", "--model", "test_tiny", "--profile", str(path)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
    assert not marker.exists()


# --- HTML escaping, end to end -----------------------------------------------------------------


class XssNet(nn.Module):
    """test_tiny with its second conv named ``<script>alert(1)</script>``."""

    def __init__(self, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.add_module(XSS, nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False))
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(getattr(self, XSS)(out)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def test_script_in_study_and_layer_names_is_escaped_in_the_report(tmp_path: Path, request) -> None:
    models.register(XSS_MODEL)(XssNet)
    request.addfinalizer(lambda: models.REGISTRY.remove(XSS_MODEL))
    weights = tmp_path / "xss.pt"
    torch.save(XssNet(num_classes=10, in_channels=3).state_dict(), weights)
    out = tmp_path / "run"
    study = "<img src=x onerror=window.pwned=1>"  # a study name holds no path separator
    argv = [
        "search",
        "--model",
        XSS_MODEL,
        "--weights",
        str(weights),
        *SEARCH.split(),
        "--trials",
        "3",
        "--budget",
        "flops=0.99",
        "--study",
        study,
        "--out",
        str(out),
        "--finetune-top",
        "1",
        "--no-onnx",
    ]
    assert main(argv) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=window.pwned=1&gt;" in page, "the study name reaches the page, escaped"
    assert "window.pwned" in page and "<img src=x onerror" not in page
    assert "alert(1)" in page, "the layer name reaches the page"
    assert XSS not in page
    assert len(re.findall(r"<script\b", page)) == len(re.findall(r"</script>", page))


# --- no network --------------------------------------------------------------------------------

GUARD = r"""
import json, socket, sys

attempts = []
_connect, _connect_ex, _sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto


def _refuse(sock, what, addr):
    if sock.family == getattr(socket, "AF_UNIX", None):
        return False
    attempts.append(f"{what} {addr!r}")
    return True


def connect(self, addr):
    if _refuse(self, "connect", addr):
        raise OSError("network access refused by test")
    return _connect(self, addr)


def connect_ex(self, addr):
    if _refuse(self, "connect_ex", addr):
        return 111
    return _connect_ex(self, addr)


def sendto(self, data, *args):
    if _refuse(self, "sendto", args[-1]):
        raise OSError("network access refused by test")
    return _sendto(self, data, *args)


def create_connection(address, *a, **k):
    attempts.append(f"create_connection {address!r}")
    raise OSError("network access refused by test")


def getaddrinfo(host, *a, **k):
    attempts.append(f"getaddrinfo {host!r}")
    raise socket.gaierror("name resolution refused by test")


socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
socket.create_connection, socket.getaddrinfo = create_connection, getaddrinfo

report, commands = sys.argv[1], json.loads(sys.argv[2])
codes = []
if commands == "probe":
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    except OSError:
        pass
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect(("127.0.0.1", 9))
    except OSError:
        pass
    s.close()
else:
    from automc.cli import main

    codes = [main(argv) for argv in commands]
ray = sys.modules.get("ray")
with open(report, "w") as f:
    json.dump({"codes": codes, "attempts": attempts,
               "ray_initialized": bool(ray is not None and ray.is_initialized())}, f)
"""


def _guarded(tmp_path: Path, commands: Any) -> dict[str, Any]:
    guard = tmp_path / "guard.py"
    guard.write_text(GUARD, encoding="utf-8")
    report = tmp_path / "net.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "AUTOMC_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(guard), str(report), json.dumps(commands)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(report.read_text(encoding="utf-8"))


def test_network_guard_catches_connections(tmp_path: Path) -> None:
    """Control: the guard records both a create_connection and a raw socket connect."""
    seen = _guarded(tmp_path, "probe")["attempts"]
    assert any(a.startswith("create_connection") for a in seen) and any(
        a.startswith("connect ") for a in seen
    )


def test_search_and_report_open_no_network_connection(home: Path, tmp_path: Path) -> None:
    out, again = tmp_path / "run", tmp_path / "again"
    study = "net"
    commands = [
        [
            "search",
            "--model",
            "test_tiny",
            *SEARCH.split(),
            "--budget",
            "flops=0.9",
            "--trials",
            "3",
            "--study",
            study,
            "--out",
            str(out),
            "--finetune-top",
            "1",
            "--finetune-epochs",
            "1",
        ],
        ["report", "--storage", f"sqlite:///{out / 'study.db'}", "--study", study, "--out", str(again)],
    ]
    result = _guarded(tmp_path, commands)
    assert result["codes"] == [0, 0]
    assert result["attempts"] == []
    assert result["ray_initialized"] is False
    assert (out / "index.html").is_file() and (again / "index.html").is_file()
