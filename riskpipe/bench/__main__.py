"""``python -m riskpipe.bench child SPEC``: one measured stage in a fresh process."""

from __future__ import annotations

import sys

from riskpipe.bench.stages import _child_main

if len(sys.argv) == 3 and sys.argv[1] == "child":
    sys.exit(_child_main(sys.argv[2]))
print("usage: riskpipe bench (this module's command line is for its own child processes)", file=sys.stderr)
sys.exit(2)
