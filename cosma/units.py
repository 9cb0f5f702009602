"""Byte sizes: parsing ``256KiB`` / ``1.5MiB`` / ``262144`` and printing them for people."""

from __future__ import annotations

import re

from cosma.errors import UsageError

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

    Bare ``K``/``M``/``G`` are binary units, as in most memory tools. Fractions of a byte
    round down.

    >>> parse_bytes("256KiB"), parse_bytes("1.5MiB"), parse_bytes("262144"), parse_bytes("1.6MiB")
    (262144, 1572864, 262144, 1677721)
    """
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
    # A fractional byte count (1.6MiB) rounds down: never more than the user asked for.
    return int(float(number) * factor)


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
