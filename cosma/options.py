"""Checks of option *values* shared by the library and the command line.

Every check returns the value in its canonical type or raises :class:`~cosma.errors.UsageError`
naming the option, the value, and what to give instead. They run before any work, so a bad
value never costs a solve.

>>> time_limit(2), threads(1), seed(7), alignment(64)
(2.0, 1, 7, 64)
>>> try:
...     time_limit(0)
... except UsageError as e:
...     print(e)
time limit must be a finite number of seconds above 0, not 0; e.g. --time-limit 60
"""

from __future__ import annotations

import math
import numbers
import os

from cosma.errors import UsageError

#: Largest byte count cosma works with (2^53: every size and sum stays exact in a float,
#: and far below what a 64-bit solver variable can hold). 8 PiB.
MAX_BYTES = 2**53
#: Largest alignment: a scratchpad page of 1 GiB is already absurd.
MAX_ALIGNMENT = 2**30
#: Largest seed: CP-SAT and HiGHS take 31-bit seeds; CBC's is a C int.
MAX_SEED = 2**31 - 2
#: More threads than this is a typo (CP-SAT rejects the model, CBC crashes).
MAX_THREADS = 1024
#: Widest element: 1 KiB per element covers every real type with room to spare.
MAX_ELEMENT_BYTES = 1024


def _integer(value: object) -> int | None:
    """``value`` as an int if it is an integer (Python or numpy, not bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _real(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return None
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def time_limit(value: object, *, option: str = "--time-limit") -> float:
    """Seconds allowed: finite and above 0 (0 does not mean "no limit" nor "default")."""
    v = _real(value)
    if v is None or not math.isfinite(v) or v <= 0:
        raise UsageError(
            f"time limit must be a finite number of seconds above 0, not {value!r}; "
            f"e.g. {option} 60"
        )
    return v


def threads(value: object, *, option: str = "--threads") -> int:
    """Solver threads: a whole number from 1 to :data:`MAX_THREADS` (default 1)."""
    v = _integer(value)
    if v is None or not 1 <= v <= MAX_THREADS:
        cores = os.cpu_count() or 1
        raise UsageError(
            f"threads must be a whole number from 1 to {MAX_THREADS}, not {value!r}; "
            f"this machine has {cores} core{'s' if cores != 1 else ''}, e.g. {option} {cores}"
        )
    return v


def seed(value: object, *, option: str = "--seed") -> int:
    """Random seed: a whole number from 0 to :data:`MAX_SEED` (every solver takes it)."""
    v = _integer(value)
    if v is None or not 0 <= v <= MAX_SEED:
        raise UsageError(
            f"seed must be a whole number from 0 to {MAX_SEED:,}, not {value!r}; e.g. {option} 0"
        )
    return v


def alignment(value: object, *, option: str = "--alignment") -> int:
    """Scratchpad alignment in bytes: a whole number from 1 to :data:`MAX_ALIGNMENT`."""
    v = _integer(value)
    if v is None or not 1 <= v <= MAX_ALIGNMENT:
        raise UsageError(
            f"alignment must be a whole number of bytes from 1 to {MAX_ALIGNMENT:,}, "
            f"not {value!r}; use 1 for none, or your scratchpad's (e.g. {option} 64)"
        )
    return v


def element_bytes(value: object, *, option: str = "--element-bytes") -> float | int:
    """Bytes per element: finite, above 0, a whole number of bits (0.5 is 4-bit data),
    at most :data:`MAX_ELEMENT_BYTES`. Whole values come back as ``int``."""
    v = _real(value)
    if (
        v is None
        or not math.isfinite(v)
        or not 0 < v <= MAX_ELEMENT_BYTES
        or not (v * 8).is_integer()
    ):
        raise UsageError(
            f"element bytes must be a positive whole number of bits up to "
            f"{MAX_ELEMENT_BYTES} bytes (e.g. 1 for 8-bit data, 4 for float32, 0.5 for "
            f"4-bit), not {value!r}; e.g. {option} 1"
        )
    return int(v) if v.is_integer() else v


def byte_count(value: object, *, what: str = "size") -> int:
    """A count of bytes as an int in ``[0, MAX_BYTES]`` (numpy integers accepted)."""
    v = _integer(value)
    if v is None or not 0 <= v <= MAX_BYTES:
        raise UsageError(
            f"{what} must be a whole number of bytes from 0 to 2^53 ({MAX_BYTES:,}), not {value!r}"
        )
    return v


def memory_limit(value: object, *, option: str = "--memory-limit") -> int:
    """Bytes an exact model may take: a size (``8GiB``) or a whole number of bytes above 0."""
    if isinstance(value, str):
        from cosma.units import parse_bytes

        v: int | None = parse_bytes(value)
    else:
        v = _integer(value)
    if v is None or v <= 0:
        raise UsageError(f"memory limit must be a size above 0, not {value!r}; e.g. {option} 8GiB")
    return v


# --- recompute versus reload (issue 13; see docs/recompute.md) ------------------------------

#: SI and binary prefixes for rates (``25.6GB/s``, ``4T/s``, ``1.5GiB/s``).
_PREFIX = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def recompute_rate(value: object, *, option: str = "--recompute-rate"):
    """Bytes of traffic that one MAC of recomputation is worth, as an exact
    :class:`~fractions.Fraction` ``>= 0``: a number, a decimal string (``0.0064``) or a
    fraction string (``1/156``). ``None`` (recompute off) is not a rate.

    >>> recompute_rate("0.0064"), recompute_rate(2), recompute_rate("1/3")
    (Fraction(4, 625), Fraction(2, 1), Fraction(1, 3))
    """
    from fractions import Fraction

    rate: Fraction | None = None
    if isinstance(value, Fraction):
        rate = value
    elif isinstance(value, bool):
        rate = None
    elif isinstance(value, numbers.Integral):
        rate = Fraction(int(value))
    elif isinstance(value, numbers.Real) and math.isfinite(float(value)):
        rate = Fraction(repr(float(value)))  # 0.0064 -> 4/625, not the binary expansion
    elif isinstance(value, str):
        try:
            rate = Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            rate = None
    if rate is None or rate < 0:
        raise UsageError(
            f"recompute rate must be a number of bytes per MAC of at least 0 (a decimal or a "
            f"fraction), not {value!r}; e.g. {option} 0.0064 (25.6 GB/s of DRAM against 4 "
            "TMAC/s), or describe the accelerator: --accelerator dram=25.6GB/s,macs=4T/s"
        )
    return _rate_in_range(rate, value, option)


#: Recompute rates cosma takes, in bytes per MAC (0 is taken too). Real accelerators sit
#: around 1e-4 to 1e-1; the exact engines scale the objective by the rate's numerator and
#: denominator, so rates far outside (1e30, 1e-400) overflow their number types.
RATE_RANGE = ("1e-9", "1e6")
_MAX_RATE_DENOMINATOR = 10**12


def _rate_in_range(rate, value: object, option: str):
    """``rate`` if 0 or within :data:`RATE_RANGE` with at most 12 decimals, else a
    UsageError naming the range."""
    from fractions import Fraction

    lo, hi = (Fraction(x) for x in RATE_RANGE)
    if rate != 0 and not (lo <= rate <= hi and rate.denominator <= _MAX_RATE_DENOMINATOR):
        raise UsageError(
            f"recompute rate {value!r} is out of range for {option}: give 0 or a rate from "
            f"{RATE_RANGE[0]} to {RATE_RANGE[1]} bytes per MAC with at most 12 decimals; to "
            "forbid recomputation leave the option out"
        )
    return rate


def _rate_quantity(text: str, key: str, units: tuple[str, ...], example: str):
    """``25.6GB/s`` -> Fraction(25600000000): a number, an optional SI or binary prefix, and
    one of ``units`` (or none)."""
    import re
    from fractions import Fraction

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKMGTP]i?)?\s*(\S*)\s*", text)
    if m is None or m.group(3) not in units or (m.group(2) or "") not in _PREFIX:
        raise UsageError(
            f"cannot read {key}={text!r} in the accelerator description: write a number with "
            f"an optional prefix (k, M, G, T, or Ki, Mi, Gi, Ti) and unit, e.g. {key}={example}"
        )
    value = Fraction(m.group(1)) * _PREFIX[m.group(2) or ""]
    if value <= 0:
        raise UsageError(f"{key} must be above 0 in the accelerator description, not {text!r}")
    return value


def accelerator_rate(value: object, *, option: str = "--accelerator"):
    """The recompute rate (bytes per MAC) of an accelerator described by its DRAM bandwidth
    and peak MAC rate: ``bandwidth / mac_rate``, the bytes the DRAM moves in the time the
    array does one MAC. ``value`` is ``"dram=25.6GB/s,macs=4T/s"`` (units optional: bytes per
    second and MACs per second) or a mapping with those two keys.

    >>> accelerator_rate("dram=25.6GB/s,macs=4T/s")
    Fraction(4, 625)
    >>> accelerator_rate({"dram": "1GiB/s", "macs": 2**30})
    Fraction(1, 1)
    """
    from collections.abc import Mapping

    if isinstance(value, Mapping):
        fields = {str(k).strip(): str(v) for k, v in value.items()}
    elif isinstance(value, str):
        fields = {}
        for part in value.split(","):
            key, sep, text = part.partition("=")
            if not sep:
                fields = {}
                break
            fields[key.strip()] = text
    else:
        fields = {}
    if set(fields) != {"dram", "macs"}:
        raise UsageError(
            f"cannot read the accelerator description {value!r}: give the DRAM bandwidth and "
            f"the peak MAC rate, e.g. {option} dram=25.6GB/s,macs=4T/s"
        )
    dram = _rate_quantity(fields["dram"], "dram", ("", "B/s", "B"), "25.6GB/s")
    macs = _rate_quantity(fields["macs"], "macs", ("", "/s", "MAC/s", "MACs/s", "MACs"), "4T/s")
    return _rate_in_range(dram / macs, value, option)
