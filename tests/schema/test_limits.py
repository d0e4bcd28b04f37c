"""Hostile data files are refused quickly, in bounded memory, with one line naming the field.

Each case writes a generated file into ``tmp_path`` and loads it with the real loader in
a subprocess whose address space is capped at 1 GiB (``RLIMIT_AS``); the subprocess
reports the ``AutomcError`` message and the seconds the load took.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from automc.errors import ConfigError
from automc.schema.common import MAX_FILE_BYTES, parse_json, parse_yaml

LOADER = r"""
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from automc.errors import AutomcError

def load(kind, path):
    if kind == "space":
        from automc.space import SearchSpace
        return SearchSpace.load(path)
    if kind == "profile":
        from automc.schema.hw_profile import load_hw_profile
        return load_hw_profile(path)
    if kind == "energy":
        from automc.schema.energy import load_energy_table_file
        return load_energy_table_file(path)
    from automc.plan import CompressionPlan
    from automc.schema.common import read_text
    return CompressionPlan.from_json(read_text(path), where=path)

kind, path = sys.argv[1:]
start = time.perf_counter()
try:
    load(kind, path)
    error = None
except AutomcError as e:
    error = str(e)
print(json.dumps({"error": error, "seconds": time.perf_counter() - start}))
"""

SPACE_HEAD = 'schema: automc/search-space\nversion: 1\nrules:\n  - select: "*"\n'
PROFILE_HEAD = "schema: automc/hw-profile\nversion: 1\n"
PLAN = {"schema": "automc/plan", "version": 1, "model": "test_tiny", "criterion": "l1", "layers": {}}


def billion_laughs() -> str:
    lines = ['lol0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"lol{i}: &a{i} [{refs}]")
    return SPACE_HEAD + "    keep: 0.5\n" + "\n".join(lines) + "\n"


def deep_block(levels: int) -> str:
    body = "".join(f"{'  ' * (i + 2)}k{i}:\n" for i in range(levels))
    return SPACE_HEAD + "    keep:\n" + body + "  " * (levels + 2) + "x: 1\n"


def plan_json(**layers: object) -> str:
    return json.dumps({**PLAN, "layers": layers})


CASES: dict[str, tuple[str, str, Callable[[], str], str]] = {
    # id: (loader kind, file name, content, expected piece of the message)
    "yaml-bomb": ("space", "bomb.yaml", billion_laughs, "lol0: YAML anchors and aliases are not allowed"),
    "yaml-deep-flow-10k": (
        "space",
        "deep.yaml",
        lambda: SPACE_HEAD + "    keep: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "in rules[0].keep",
    ),
    "yaml-deep-block-100": ("space", "deep100.yaml", lambda: deep_block(100), "nested deeper than 64 levels"),
    "yaml-100k-digit-int": (
        "profile",
        "bigint.yaml",
        lambda: PROFILE_HEAD + "runtime: {threads: " + "9" * 100_000 + "}\n",
        "runtime.threads: number literal of 100000 characters",
    ),
    "yaml-20mib-file": (
        "profile",
        "huge.yaml",
        lambda: PROFILE_HEAD + "# padding\n" * (2 * 2**20),
        f"file is too large ({len(PROFILE_HEAD) + 20 * 2**20} bytes; at most {MAX_FILE_BYTES})",
    ),
    "yaml-duplicate-key": (
        "space",
        "dup.yaml",
        lambda: SPACE_HEAD + "    keep: 0.5\n    w_bits: [4]\n    keep: 0.9\n",
        "rules[0].keep: duplicate key",
    ),
    "yaml-version-1.0": (
        "energy",
        "energy.yaml",
        lambda: "schema: automc/energy-table\nversion: 1.0\n",
        "version: unsupported version 1.0",
    ),
    "yaml-step-1e-9": (
        "space",
        "step.yaml",
        lambda: SPACE_HEAD + "    keep: {low: 0.2, high: 1.0, step: 1.0e-9}\n",
        "rules[0].keep.step: step 1e-09 makes 8e+08 values (at most 10000)",
    ),
    "yaml-criterion-list-of-lists": (
        "space",
        "criterion.yaml",
        lambda: SPACE_HEAD + "criterion: [[l1]]\n",
        "criterion: must be a criterion name",
    ),
    "json-duplicate-key": (
        "plan",
        "dup.json",
        lambda: '{"schema": "automc/plan", "layers": {"conv1": {"keep_ratio": 0.5, "keep_ratio": 0.7}}}',
        "keep_ratio: duplicate key",
    ),
    "json-keep-ratio-true": (
        "plan",
        "keep.json",
        lambda: plan_json(conv1={"keep_ratio": True}),
        "layer 'conv1': keep_ratio must be in (0, 1], got True",
    ),
    "json-sparsity-true": (
        "plan",
        "sparsity.json",
        lambda: plan_json(conv1={"sparsity": True}),
        "layer 'conv1': sparsity must be in [0, 1), got True",
    ),
    "json-quantizer-list": (
        "plan",
        "quantizer.json",
        lambda: plan_json(conv1={"w_bits": 4, "quantizer": ["kmeans"]}),
        "layer 'conv1': quantizer must be a name",
    ),
    "json-criterion-list": (
        "plan",
        "criterion.json",
        lambda: json.dumps({**PLAN, "criterion": ["l1"]}),
        "'criterion' must be a string, got ['l1']",
    ),
    "json-version-1.0": (
        "plan",
        "version.json",
        lambda: json.dumps({**PLAN, "version": 1.0}),
        "unsupported version 1.0",
    ),
    "json-version-true": (
        "plan",
        "true.json",
        lambda: json.dumps({**PLAN, "version": True}),
        "unsupported version True",
    ),
    "json-100k-digit-int": (
        "plan",
        "bigint.json",
        lambda: '{"schema": "automc/plan", "version": ' + "9" * 100_000 + "}",
        "number literal of 100000 characters",
    ),
    "json-deep-10k": (
        "plan",
        "deep.json",
        lambda: "[" * 10_000 + "]" * 10_000,
        "nested deeper than 64 levels",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_is_refused_fast_in_bounded_memory(case: str, tmp_path: Path) -> None:
    kind, name, content, expect = CASES[case]
    path = tmp_path / name
    path.write_text(content(), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["error"] is not None, f"{case}: accepted"
    message = outcome["error"]
    assert message.startswith(str(path)), message
    assert expect in message, message
    assert "\n" not in message and len(message) < 1000
    assert outcome["seconds"] < 10.0


def test_limits_do_not_refuse_ordinary_files() -> None:
    data = parse_yaml(
        "a: [1, 2.5, -3.0e-4, 1_000]\nb: {c: 'x', d: null, e: true}\n" + "n: " + "9" * 40 + "\n", "f"
    )
    assert data["a"] == [1, 2.5, -3e-4, 1000] and data["b"] == {"c": "x", "d": None, "e": True}
    assert data["n"] == int("9" * 40)
    assert parse_yaml("k: " + "[" * 63 + "]" * 63, "f")["k"] is not None
    assert parse_json('{"a": [1, 2.5, {"b": null}], "c": "' + "x" * 10_000 + '"}', "f")["a"][2] == {"b": None}
    long_string = parse_yaml("s: '" + "1" * 1000 + "'\n", "f")
    assert long_string["s"] == "1" * 1000  # a quoted string of digits is not a number literal


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("true: 1\nTrue: 2\n", "duplicate key True"),  # different spelling, same key once built
        ("a: !!int " + "1" * 50 + "\n", "a: number literal of 50 characters"),
        ("a: [1, *x]\n", "a[1]: YAML anchors and aliases are not allowed"),
        ("a: &x 1\n", "a: YAML anchors and aliases are not allowed"),
        ("--- 1\n--- 2\n", "not valid YAML"),
    ],
)
def test_yaml_parse_refusals(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_yaml(text, "f.yaml")
    assert str(err.value).startswith("f.yaml: ") and needle in str(err.value)


def test_shipped_files_parse_exactly_as_safe_load_does() -> None:
    root = Path(__file__).resolve().parents[2]
    shipped = sorted((root / "hw_profiles").glob("*.yaml")) + sorted((root / "search_spaces").glob("*.yaml"))
    assert len(shipped) >= 6
    for path in shipped:
        text = path.read_text(encoding="utf-8")
        assert parse_yaml(text, str(path)) == yaml.safe_load(text), path


def test_integer_fields_beyond_1e15_and_booleans_are_refused_naming_the_field() -> None:
    from automc.schema.common import Problems

    probs = Problems("f.yaml")
    record = {"count": 10**16, "ok": 10**15, "flag": True, "version": 1.0}
    assert probs.number(record, "count", "table", integer=True) is None
    assert probs.number(record, "ok", "table", integer=True) == 10**15
    assert probs.number(record, "flag", "table") is None
    assert probs.number(record, "version", "", integer=True) is None
    with pytest.raises(ConfigError) as err:
        probs.raise_if_any()
    assert str(err.value) == (
        "f.yaml: table.count: must be at most 1e+15 in magnitude, got 1.000e+16; "
        "table.flag: must be a number, got True; version: must be an integer, got 1.0"
    )
