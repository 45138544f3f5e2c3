"""hedgeflow: durable cross-exchange funding-rate arbitrage on Temporal."""

__version__ = "0.1.0"
