"""Django settings for the scale run (``bench.scale``): the tidings target's, with no
cap on connections per client address, and a line in the log when a worker loads them.

The load generators stand for 50,000 browsers from a handful of loopback source
addresses, so ``MAX_CONNECTIONS_PER_IP`` (100 per address and process by default,
docs/settings.md) would refuse all but a few hundred: it is turned off here, and
only here. Everything else (rules, rate limit, queue size, history: 100 messages,
300 s per topic) is :mod:`bench.servers.tidings_settings`'. ``BENCH_SCALE_MARK=1``
(set by the run for its uvicorn workers only) prints ``scale-worker-ready <pid>`` to
stderr when the settings load: uvicorn loads the app, and these settings with it,
just before its worker starts serving, so the run can tell when every worker is up.
"""

import os
import sys

from bench.servers.tidings_settings import *  # noqa: F403
from bench.servers.tidings_settings import TIDINGS

TIDINGS = {**TIDINGS, "MAX_CONNECTIONS_PER_IP": 0}
# BENCH_CONNECT_RATE="rate,burst" (or "0": no admission limit) overrides CONNECT_RATE
if os.environ.get("BENCH_CONNECT_RATE"):
    rate, _, burst = os.environ["BENCH_CONNECT_RATE"].partition(",")
    TIDINGS["CONNECT_RATE"] = {"rate": float(rate), "burst": int(burst or 1)}

if os.environ.get("BENCH_SCALE_MARK") == "1":
    print(f"scale-worker-ready {os.getpid()}", file=sys.stderr, flush=True)
