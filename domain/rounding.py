"""Quantity rounding the way venues round: down to the quantity step, never up (one exception,
:func:`round_up`, for a reduce-only close of a whole position, which the venue caps at what is held).

All functions take and return ``Decimal``; floats are refused so that binary rounding error
never reaches an order.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP, Decimal
from fractions import Fraction
from math import lcm


def _check(name: str, value: Decimal) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")


def _to_step(qty: Decimal, step: Decimal, rounding: str) -> Decimal:
    """``qty`` (>= 0) as a whole number of ``step``s, rounded as ``rounding`` says."""
    _check("qty", qty)
    _check("step", step)
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    if qty < 0:
        raise ValueError(f"qty must be >= 0, got {qty}")
    units = (qty / step).to_integral_value(rounding=rounding)
    return (units * step).quantize(step) if step.as_tuple().exponent < 0 else units * step


def round_down(qty: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of ``step`` that is <= ``qty`` (for qty >= 0)."""
    return _to_step(qty, step, ROUND_DOWN)


def round_up(qty: Decimal, step: Decimal) -> Decimal:
    """Smallest multiple of ``step`` that is >= ``qty`` (for qty >= 0). Only for a reduce-only
    order that closes everything held: the venue executes no more than the position, so a
    position that is no multiple of the step (the step grew since it was opened) still closes."""
    return _to_step(qty, step, ROUND_UP)


def common_step(a: Decimal, b: Decimal) -> Decimal:
    """Smallest step that is a multiple of both ``a`` and ``b`` (the coarser one when one
    divides the other: 0.001 and 0.01 -> 0.01). A hedged pair must be a multiple of it so
    that both venues accept the same quantity."""
    _check("a", a)
    _check("b", b)
    if a <= 0 or b <= 0:
        raise ValueError("steps must be > 0")
    fa, fb = Fraction(a), Fraction(b)
    den = lcm(fa.denominator, fb.denominator)
    num = lcm(int(fa * den), int(fb * den))
    return Decimal(num) / Decimal(den)


def base_to_contracts(base_qty: Decimal, contract_size: Decimal) -> Decimal:
    _check("base_qty", base_qty)
    _check("contract_size", contract_size)
    if contract_size <= 0:
        raise ValueError("contract_size must be > 0")
    return base_qty / contract_size


def contracts_to_base(contracts: Decimal, contract_size: Decimal) -> Decimal:
    _check("contracts", contracts)
    _check("contract_size", contract_size)
    return contracts * contract_size


def below_minimum(qty: Decimal, price: Decimal, min_qty: Decimal, min_notional: Decimal) -> str | None:
    """Why an order of ``qty`` at ``price`` would be refused by the venue, or None."""
    if qty <= 0:
        return f"quantity {qty} must be > 0"
    if qty < min_qty:
        return f"quantity {qty} is below the minimum quantity {min_qty}"
    if qty * price < min_notional:
        return f"notional {qty * price} is below the minimum notional {min_notional}"
    return None
