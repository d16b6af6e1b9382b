"""Production settings plus a per-request counter of queries and garbage-collector time
(bench.common.QueryCountMiddleware), for bench/api_scale.py. Never used outside the benchmarks."""

from config.settings.production import *  # noqa: F403
from config.settings.production import MIDDLEWARE

MIDDLEWARE = ["bench.common.QueryCountMiddleware", *MIDDLEWARE]
