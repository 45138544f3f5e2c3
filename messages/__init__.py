"""Messages: the typed inputs, outputs and state that workflows and activities exchange (plain
pydantic data, Decimal money, no secrets), serialised by the pydantic data converter. Below the
activities and the workflows, which both import them; above venues, domain and config."""
