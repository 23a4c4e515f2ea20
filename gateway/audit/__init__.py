"""The audit trail: one event per request and per security or admin change, chained, in Redis."""
