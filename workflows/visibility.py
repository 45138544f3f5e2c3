"""What operators see of a trade: search attributes (keys defined in ``config.names``), the
static summary line and the markdown details shown in the Web UI."""

from __future__ import annotations

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from config.names import SA_LONG, SA_SHORT, SA_STATE, SA_SYMBOL
from messages.trade import TradeParams, TradeStatus


def summary_line(p: TradeParams) -> str:
    return f"{p.symbol} long {p.long_venue} / short {p.short_venue} ${p.notional_usd:,.0f}"


def search_attributes_for(p: TradeParams, state: str = "opening") -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(SA_STATE, state),
            SearchAttributePair(SA_SYMBOL, p.symbol),
            SearchAttributePair(SA_LONG, p.long_venue),
            SearchAttributePair(SA_SHORT, p.short_venue),
        ]
    )


def search_attribute_updates(p: TradeParams, state: str) -> list:
    return [SA_STATE.value_set(state), SA_SYMBOL.value_set(p.symbol), SA_LONG.value_set(p.long_venue),
            SA_SHORT.value_set(p.short_venue)]


def details_markdown(p: TradeParams, s: TradeStatus) -> str:
    rows = "\n".join(
        f"| {name} | {leg.venue} | {leg.side} | {leg.filled_qty} | {leg.avg_price or '-'} | {leg.fees} | "
        f"{leg.funding} | {leg.realized_pnl if leg.realized_pnl is not None else '-'} |"
        for name, leg in zip(("long", "short"), s.legs, strict=True)
    )
    return (
        f"**{s.state}** — {summary_line(p)}\n\n"
        f"| leg | venue | side | qty | avg price | fees | funding | PnL |\n|---|---|---|---|---|---|---|---|\n{rows}\n\n"
        f"target qty {s.target_qty} · gap {s.hedge_gap if s.hedge_gap is not None else '-'} · "
        f"spread {s.spread_bps_8h if s.spread_bps_8h is not None else '-'} bps/8h · "
        f"funding {s.funding_collected_usd} · realised PnL {s.realized_pnl_usd if s.realized_pnl_usd is not None else '-'}"
        + (f"\n\naborted: {s.abort_reason}" if s.abort_reason else "")
        + (f"\n\nclose reason: {s.close_reason}" if s.close_reason else "")
    )
