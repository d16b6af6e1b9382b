"""Production settings plus a per-request query counter (bench.common.QueryCountMiddleware),
for bench/api_scale.py. Never used outside the benchmarks."""

from config.settings.production import *  # noqa: F403
from config.settings.production import MIDDLEWARE

MIDDLEWARE = ["bench.common.QueryCountMiddleware", *MIDDLEWARE]
