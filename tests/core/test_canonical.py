"""RFC 8785 canonical JSON: the RFC's own examples, and the fast path equal to it on its domain."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vvctl.core.canonical import (
    MAX_SAFE_INTEGER,
    NotCanonicalizable,
    canonicalize,
    canonicalize_plain,
    is_plain,
)


def from_bits(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


# RFC 8785 appendix B: IEEE 754 bit patterns and their ECMAScript serialization.
@pytest.mark.parametrize(
    ("bits", "expected"),
    [
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_rfc_number_serialization(bits: str, expected: str) -> None:
    assert canonicalize(from_bits(bits)) == expected.encode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e21", "1e+21"),
        ("1e-7", "1e-7"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("333333333.33333329", "333333333.3333333"),
        ("4.50", "4.5"),
        ("2e-3", "0.002"),
        ("0.000001", "0.000001"),
        ("1E30", "1e+30"),
        ("100", "100"),
    ],
)
def test_number_literals(text: str, expected: str) -> None:
    assert canonicalize(json.loads(text)) == expected.encode()


def test_rfc_section_3_2_2_example() -> None:
    source = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(json.loads(source)) == expected.encode("utf-8")


def test_rfc_sorting_example_uses_utf16_code_units() -> None:
    source = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = [value for value in json.loads(canonicalize(source)).values()]
    assert order == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    assert not is_plain(source)  # non-ASCII keys: code-point order would differ, so no fast path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\u0000\u001f\u007f", '"\\u0000\\u001f\u007f"'),
        ("\b\t\n\f\r", '"\\b\\t\\n\\f\\r"'),
        ('"\\/', '"\\"\\\\/"'),
        ("\u2028\U0001f600é", '"\u2028\U0001f600é"'),
    ],
)
def test_string_escapes(value: str, expected: str) -> None:
    assert canonicalize(value) == expected.encode("utf-8")
    assert canonicalize_plain({"k": value}) == b'{"k":' + expected.encode("utf-8") + b"}"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**53, "\ud800", {"k": "\udc00"}])
def test_values_without_canonical_form_are_refused(value: Any) -> None:
    with pytest.raises(NotCanonicalizable):
        canonicalize(value)


def test_lone_surrogate_refused_by_the_fast_path_too() -> None:
    with pytest.raises(NotCanonicalizable):
        canonicalize_plain({"k": "\ud800"})


plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(document=st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=8), plain_values, max_size=6))
def test_plain_fast_path_equals_rfc8785(document: dict[str, Any]) -> None:
    assert is_plain(document)
    assert canonicalize_plain(document) == canonicalize(document)


@pytest.mark.parametrize("value", [1.5, 2**53, {"é": 1}, [1.0], {"k": {"ü": None}}])
def test_is_plain_excludes_what_the_fast_path_gets_wrong(value: Any) -> None:
    assert not is_plain(value)
