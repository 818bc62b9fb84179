"""``python -m riskpipe.cli``: the same as the ``riskpipe`` command."""

from __future__ import annotations

from riskpipe.cli import main

main()
