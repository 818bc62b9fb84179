"""The start of a child process's code that dies at the k-th ``os.replace`` (k = ``sys.argv[2]``)
with exit status ``CRASH``: a real kill between two renames, for the crash tests of ingest and
publication. Append the code the child runs."""

CRASH = 77
CRASH_AT_KTH_REPLACE = f"""
import json, os, sys
from datetime import date
from pathlib import Path
k, calls, real = int(sys.argv[2]), [0], os.replace
def crashing(src, dst, *args, **kwargs):
    calls[0] += 1
    if calls[0] == k:
        os._exit({CRASH})
    return real(src, dst, *args, **kwargs)
os.replace = crashing
"""
