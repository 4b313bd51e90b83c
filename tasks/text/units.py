"""A small table of physical units: parse ``"km/h"``, ``"kg m^2/s"``, ``"\\mathrm{J/(mol\\,K)}"`` into an SI
factor and a dimension vector, and read quantities such as ``"3.2 \\times 10^{3} m/s"``.

Enough for unit-conversion problems and for HiPhO-style unit checks; not a units library. Affine units
(degrees Celsius) are deliberately absent: a value in them cannot be scaled to SI.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# dimension exponents over (m, kg, s, A, K, mol)
Dim = tuple[int, int, int, int, int, int]
_NONE: Dim = (0, 0, 0, 0, 0, 0)
_L, _M, _T, _I, _TH, _N = (
    (1, 0, 0, 0, 0, 0),
    (0, 1, 0, 0, 0, 0),
    (0, 0, 1, 0, 0, 0),
    (0, 0, 0, 1, 0, 0),
    (0, 0, 0, 0, 1, 0),
    (0, 0, 0, 0, 0, 1),
)


def _d(*parts: tuple[Dim, int]) -> Dim:
    out = [0] * 6
    for dim, power in parts:
        for k in range(6):
            out[k] += dim[k] * power
    return tuple(out)  # type: ignore[return-value]


_FORCE = _d((_M, 1), (_L, 1), (_T, -2))
_ENERGY = _d((_FORCE, 1), (_L, 1))
_POWER = _d((_ENERGY, 1), (_T, -1))
_CHARGE = _d((_I, 1), (_T, 1))
_VOLT = _d((_POWER, 1), (_I, -1))

# symbol -> (factor to SI, dimension, takes SI prefixes)
UNITS: dict[str, tuple[float, Dim, bool]] = {
    "m": (1.0, _L, True),
    "g": (1e-3, _M, True),
    "s": (1.0, _T, True),
    "A": (1.0, _I, True),
    "K": (1.0, _TH, True),
    "mol": (1.0, _N, True),
    "N": (1.0, _FORCE, True),
    "J": (1.0, _ENERGY, True),
    "W": (1.0, _POWER, True),
    "Pa": (1.0, _d((_FORCE, 1), (_L, -2)), True),
    "Hz": (1.0, _d((_T, -1)), True),
    "C": (1.0, _CHARGE, True),
    "V": (1.0, _VOLT, True),
    "Ω": (1.0, _d((_VOLT, 1), (_I, -1)), True),
    "ohm": (1.0, _d((_VOLT, 1), (_I, -1)), True),
    "F": (1.0, _d((_CHARGE, 1), (_VOLT, -1)), True),
    "H": (1.0, _d((_VOLT, 1), (_T, 1), (_I, -1)), True),
    "T": (1.0, _d((_M, 1), (_T, -2), (_I, -1)), False),
    "Wb": (1.0, _d((_VOLT, 1), (_T, 1)), True),
    "eV": (1.602176634e-19, _ENERGY, True),
    "L": (1e-3, _d((_L, 3)), True),
    "l": (1e-3, _d((_L, 3)), False),
    "min": (60.0, _T, False),
    "h": (3600.0, _T, False),
    "hr": (3600.0, _T, False),
    "day": (86400.0, _T, False),
    "Wh": (3600.0, _ENERGY, True),
    "cal": (4.184, _ENERGY, True),
    "atm": (101325.0, _d((_FORCE, 1), (_L, -2)), False),
    "bar": (1e5, _d((_FORCE, 1), (_L, -2)), True),
    "mi": (1609.344, _L, False),
    "ft": (0.3048, _L, False),
    "in": (0.0254, _L, False),
    "yd": (0.9144, _L, False),
    "lb": (0.45359237, _M, False),
    "mph": (0.44704, _d((_L, 1), (_T, -1)), False),
    "rad": (1.0, _NONE, False),
    "deg": (math.pi / 180, _NONE, False),
    "°": (math.pi / 180, _NONE, False),
}
PREFIXES: dict[str, float] = {
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "µ": 1e-6,
    "μ": 1e-6,
    "m": 1e-3,
    "c": 1e-2,
    "d": 1e-1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
}
_LATEX = (
    ("\\Omega", "Ω"),
    ("\\mu ", "µ"),
    ("\\mu", "µ"),
    ("\\cdot", "*"),
    ("·", "*"),
    ("\\times", "*"),
    ("^\\circ", "°"),
    ("\\circ", "°"),
    ("\\,", " "),
    ("\\;", " "),
    ("\\ ", " "),
    ("~", " "),
    ("\\mathrm", ""),
    ("\\text", ""),
    ("\\rm", ""),
    ("²", "^2"),
    ("³", "^3"),
    ("⁻¹", "^-1"),
    ("⁻²", "^-2"),
)
_FACTOR_RE = re.compile(r"([A-Za-zΩµμ°]+)\s*(?:\^\s*\(?\s*([-+]?\d{1,2})\s*\)?)?")
_NUM_RE = re.compile(
    r"\s*([-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+\.?\d*|\.\d+))(?:\s*[eE]\s*([-+]?\d{1,4}))?"
    r"(?:\s*(?:\*|x|×)\s*10\s*\^\s*[({]?\s*([-+]?\d{1,4})\s*[)}]?)?"
)


@dataclass(frozen=True)
class Unit:
    """A unit as a factor to SI and a dimension vector over (m, kg, s, A, K, mol)."""

    factor: float
    dim: Dim

    def compatible(self, other: Unit) -> bool:
        """Same dimension (so a value converts between the two)."""
        return self.dim == other.dim


def _symbol(name: str) -> Unit | None:
    if name in UNITS:
        f, dim, _ = UNITS[name]
        return Unit(f, dim)
    for p, pf in PREFIXES.items():
        rest = name[len(p) :]
        if name.startswith(p) and rest in UNITS and UNITS[rest][2]:
            f, dim, _ = UNITS[rest]
            return Unit(pf * f, dim)
    return None


def normalize_unit(text: str) -> str:
    """LaTeX-ish unit text (``\\mathrm{m\\,s^{-2}}``) to plain ``m s^-2``."""
    s = text.strip().replace("$", "")
    for a, b in _LATEX:
        s = s.replace(a, b)
    s = s.replace("{", "").replace("}", "")
    s = re.sub(r"\bper\b", "/", s)
    return " ".join(s.split())


def parse_unit(text: str | None) -> Unit | None:
    """``"km/h"`` -> Unit(0.2777..., (1, 0, -1, 0, 0, 0)); an empty string is dimensionless; None if any
    factor is unknown. A ``/`` divides by the next factor, or by a whole parenthesised group."""
    if text is None:
        return None
    s = normalize_unit(text)
    if len(s) > 64:
        return None
    if not s:
        return Unit(1.0, _NONE)
    factor, dim = 1.0, [0] * 6
    sign, group_sign, i = 1, 1, 0
    while i < len(s):
        c = s[i]
        if c in " *":
            i += 1
            continue
        if c == "/":
            sign = -1
            i += 1
            continue
        if c == "(":
            group_sign, sign = sign, 1
            i += 1
            continue
        if c == ")":
            group_sign = 1
            i += 1
            continue
        m = _FACTOR_RE.match(s, i)
        if not m:
            return None
        unit = _symbol(m.group(1))
        if unit is None:
            return None
        power = int(m.group(2) or 1) * sign * group_sign
        factor *= unit.factor**power
        for k in range(6):
            dim[k] += unit.dim[k] * power
        sign, i = 1, m.end()
    return Unit(factor, tuple(dim))  # type: ignore[arg-type]


def parse_quantity(text: str) -> tuple[float, str] | None:
    """``"v = 3.2e3 km/h"`` -> (3200.0, "km/h"). A leading ``name =`` is dropped; the unit may be empty.
    None if the text does not start with a number (exponents beyond +-400 are refused)."""
    s = text.strip().replace("$", "").replace("\\approx", "=")
    if "=" in s:
        s = s.rsplit("=", 1)[1]
    s = s.replace("\\times", "*").replace("\\cdot", "*").replace("\\,", " ").replace("~", " ")
    m = _NUM_RE.match(s)
    if not m:
        return None
    exp = int(m.group(2) or 0) + int(m.group(3) or 0)
    if abs(exp) > 400:
        return None
    try:
        value = float(m.group(1).replace(",", "")) * 10.0**exp
    except OverflowError:
        return None
    return value, s[m.end() :].strip()


def convert(value: float, from_unit: str, to_unit: str) -> float | None:
    """``value`` in ``from_unit`` expressed in ``to_unit``; None if either is unknown or dimensions differ."""
    a, b = parse_unit(from_unit), parse_unit(to_unit)
    if a is None or b is None or not a.compatible(b):
        return None
    return value * a.factor / b.factor
