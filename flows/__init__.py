"""Prefect flows: thin stories over riskpipe library calls. Tasks pass paths and dates, never frames."""
