"""errors.one_line: how every failure record and last-resort message prints an exception."""

from __future__ import annotations

from automc.errors import one_line


def test_one_line_collapses_whitespace_cuts_and_names_the_type() -> None:
    e = RuntimeError("shape mismatch:\n  got (1, 3)\tand (1, 4). Then a traceback-ish tail " + "x" * 500)
    text = one_line(e)
    assert "\n" not in text and "\t" not in text
    assert text.startswith("RuntimeError: shape mismatch: got (1, 3) and (1, 4). Then")
    assert len(text) == len("RuntimeError: ") + 300
    assert one_line(e, 40, named=False) == "shape mismatch: got (1, 3) and (1, 4). T"
    assert one_line(e, first_sentence=True) == "RuntimeError: shape mismatch: got (1, 3) and (1, 4)."


def test_one_line_of_an_exception_without_a_message_is_its_type() -> None:
    assert one_line(KeyError()) == "KeyError"
    assert one_line(ValueError("  "), named=False) == ""
