import math

import pytest

from tasks.text.units import convert, parse_quantity, parse_unit


@pytest.mark.parametrize(
    "a, b, factor",
    [
        ("km/h", "m/s", 1 / 3.6),
        ("mph", "km/h", 1.609344),
        ("kWh", "J", 3.6e6),
        ("J/(mol K)", "cal/(mol K)", 1 / 4.184),
        (r"\mathrm{m\,s^{-2}}", "m/s^2", 1.0),
        ("g/cm^3", "kg/m^3", 1000.0),
        (r"k\Omega", "ohm", 1000.0),
        ("atm", "kPa", 101.325),
        ("µs", "s", 1e-6),
    ],
)
def test_convert(a, b, factor):
    assert math.isclose(convert(1.0, a, b), factor, rel_tol=1e-9)


def test_incompatible_or_unknown_units():
    assert convert(1.0, "kg", "m") is None
    assert convert(1.0, "furlong", "m") is None
    assert parse_unit("N") == parse_unit("kg m/s^2")
    assert parse_unit("") is not None and parse_unit("x" * 100) is None


@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("3.2 km/h", 3.2, "km/h"),
        ("v = 1.5 \\times 10^{3} m/s", 1500.0, "m/s"),
        ("2.02\\ \\mathrm{s}", 2.02, "\\ \\mathrm{s}"),
        ("25,000 N", 25000.0, "N"),
        ("-4e-3", -0.004, ""),
    ],
)
def test_parse_quantity(text, value, unit):
    got = parse_quantity(text)
    assert got is not None and math.isclose(got[0], value) and got[1] == unit


def test_parse_quantity_refuses():
    assert parse_quantity("fast") is None and parse_quantity("1e999") is None and parse_quantity("") is None
