"""Byte sizes: parsing ``256KiB`` / ``1.5MiB`` / ``262144`` and printing them for people."""

from __future__ import annotations

import re

from cosma.errors import UsageError
from cosma.options import MAX_BYTES

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
}

_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str) -> int:
    """Parse a byte count with an optional unit (``KiB``, ``MiB``, ``GiB``, ``kB``, ``MB``...).

    Bare ``K``/``M``/``G`` are binary units, as in most memory tools. A fraction of a unit
    that ends in a fraction of a byte rounds down (``1.6MiB``); a plain byte count must be
    whole (``1.5`` is refused, not read as 1).

    >>> parse_bytes("256KiB"), parse_bytes("1.5MiB"), parse_bytes("262144"), parse_bytes("1.6MiB")
    (262144, 1572864, 262144, 1677721)
    """
    if "peak" in str(text).lower():
        raise UsageError(
            f"budget {text!r}: fractions of the peak (0.9xpeak) are rematerialization "
            "budgets, for cosma plan --objective compute; here give bytes or M_R, M_H, M_P"
        )
    m = _SIZE_RE.match(str(text))
    if not m:
        raise UsageError(
            f"cannot read {text!r} as a size: write a byte count with an optional unit, "
            "e.g. 262144, 256KiB, 1.5MiB"
        )
    number, unit = m.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise UsageError(
            f"unknown size unit {unit!r} in {text!r}: use B, KiB, MiB, GiB (or kB, MB, GB)"
        )
    if factor == 1 and "." in number and float(number) != int(float(number)):
        raise UsageError(
            f"cannot read {text!r} as a size: a byte count is a whole number; write "
            f"{int(float(number))} or {int(float(number)) + 1}, or use a unit (e.g. {number}KiB)"
        )
    # A fractional unit (1.6MiB) rounds down to whole bytes: never more than asked for.
    from fractions import Fraction

    value = int(Fraction(number) * factor)
    if value > MAX_BYTES:
        raise UsageError(
            f"size {text!r} is too large: cosma works with at most 2^53 bytes ({MAX_BYTES:,})"
        )
    return value


def format_bytes(n: int) -> str:
    """Format a byte count for people, binary units, 3 significant digits.

    >>> format_bytes(512), format_bytes(262144), format_bytes(2408448)
    ('512 B', '256 KiB', '2.30 MiB')
    """
    if n < 1024:
        return f"{n} B"
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            v = n / factor
            if v == int(v):
                return f"{int(v)} {unit}"
            decimals = max(0, 2 - len(str(int(v))) + 1)
            return f"{v:.{decimals}f} {unit}"
    raise AssertionError("unreachable")
