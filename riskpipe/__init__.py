"""riskpipe: risk-scoring low-value e-commerce shipments at the border."""

__version__ = "0.1.0"
