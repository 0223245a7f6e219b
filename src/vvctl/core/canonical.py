"""RFC 8785 (JSON Canonicalization Scheme) bytes: what vvctl signs and hashes.

:func:`canonicalize` is the reference: a thin wrapper over the ``rfc8785`` package (Trail of Bits), which
implements the ECMAScript number formatting, string escaping and UTF-16 key ordering the RFC requires.

:func:`canonicalize_plain` gives the same bytes for the narrow shape of vvctl's own signed documents
(objects whose keys are ASCII, whose leaves are strings, safe integers, booleans or null; no floats) at a
fifth of the cost, because the standard library's C encoder already writes exactly JCS for that shape:
it escapes the same characters the same way, and for ASCII keys code-point order is UTF-16 order.
The tests check the two agree on that whole domain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from vvctl.core.errors import InputError

MAX_SAFE_INTEGER = 2**53 - 1


class NotCanonicalizable(InputError):
    """The value has no RFC 8785 form (NaN, infinity, an integer beyond 2**53, a lone surrogate, ...)."""


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value."""
    import rfc8785

    try:
        result: bytes = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise NotCanonicalizable(f"value has no RFC 8785 canonical form: {exc}") from None
    except RecursionError:
        raise NotCanonicalizable("value has no RFC 8785 canonical form: nested too deeply") from None
    return result


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)


def canonicalize_plain(value: Mapping[str, Any]) -> bytes:
    """:func:`canonicalize` for vvctl's signed-document shape; the caller guarantees the shape.

    Raises :class:`NotCanonicalizable` for strings that are not valid Unicode (lone surrogates), as the
    reference does.
    """
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise NotCanonicalizable("value has no RFC 8785 canonical form: a string is not valid Unicode") from None


def is_plain(value: Any) -> bool:
    """True when ``value`` lies in the domain where :func:`canonicalize_plain` equals :func:`canonicalize`."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if isinstance(value, list):
        return all(is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and is_plain(v) for k, v in value.items())
    return False


__all__ = ["MAX_SAFE_INTEGER", "NotCanonicalizable", "canonicalize", "canonicalize_plain", "is_plain"]
