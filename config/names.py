"""The public Temporal names of ``../shared/CONTRACT.md`` that every layer shares, defined once:
search-attribute keys and the scanner's workflow id. (Workflow and activity
*names* are on their definitions, referenced by function, never retyped.)"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

SA_STATE = SearchAttributeKey.for_keyword("TradeState")
SA_SYMBOL = SearchAttributeKey.for_keyword("Symbol")
SA_LONG = SearchAttributeKey.for_keyword("LongVenue")
SA_SHORT = SearchAttributeKey.for_keyword("ShortVenue")
#: every search attribute hedgeflow uses (``up`` registers them on the dev server)
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (SA_STATE, SA_SYMBOL, SA_LONG, SA_SHORT)

SCANNER_ID = "scanner"
