"""Binance-style errors of the simulated venue: :class:`SimError` and the shapes it answers with."""

from __future__ import annotations


class SimError(Exception):
    """A Binance-style error: HTTP status, code and message."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


# Binance error shapes used by the simulator
def err_invalid_symbol() -> SimError:
    return SimError(-1121, "Invalid symbol.")


def err_order_not_found() -> SimError:
    return SimError(-2013, "Order does not exist.")


def err_margin() -> SimError:
    return SimError(-2019, "Margin is insufficient.")


def err_reduce_only() -> SimError:
    return SimError(-2022, "ReduceOnly Order is rejected.")


def err_dropped() -> SimError:
    """The answer to an order whose response the ``drop_responses`` fault swallowed."""
    return SimError(-1007, "Timeout waiting for response from backend server. Send status unknown; "
                           "execution status unknown.", 503)
