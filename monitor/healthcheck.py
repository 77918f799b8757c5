"""Container health checks: ``python -m monitor.healthcheck poller|worker|api [--port N]``.

Role: a Docker ``HEALTHCHECK`` (docker-compose.yml) for each wirewatch role, answering
"is the process in *this* container doing its job?" — not just "is it running?":

- ``poller``: a poller heartbeat (``heartbeat:poller:<host>:<pid>``, written every 2 s,
  expiring after 10 s) exists for this host name (a container's host name is its id);
- ``worker``: an rq worker of this host serves this installation's items queue (rq's
  key for a worker expires when it stops heartbeating, within ``worker_ttl``, 25 s);
- ``api``: ``GET http://127.0.0.1:<port>/healthz`` answers 200.

Redis comes from ``$REDIS_URL`` (or ``redis.url``) and the key prefix from the config
(``$WIREWATCH_CONFIG``). Exit code 0 healthy, 1 not (with the reason on stderr), so it
works with any supervisor. No secret is printed.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import urllib.request

import redis

from monitor.config_loader import ConfigError, load_config
from monitor.keys import Keys


def _redis() -> tuple[redis.Redis, Keys]:
    config = load_config()
    url = config.redis.url or os.environ.get("REDIS_URL", "")
    if not url:
        raise RuntimeError("no REDIS_URL or redis.url")
    return redis.Redis.from_url(url, socket_timeout=5), Keys(config.redis.prefix)


def poller_alive(client: redis.Redis, keys: Keys, host: str) -> bool:
    pattern = keys.poller_heartbeat(f"{host}:*")
    return any(True for _ in client.scan_iter(pattern, count=1000))


def worker_alive(client: redis.Redis, keys: Keys, host: str) -> bool:
    """rq lists the worker keys of each queue; a dead worker's key has expired."""
    members = client.smembers(f"rq:workers:{keys.items_queue}")
    return any(client.hget(key, "hostname") == host.encode() for key in members)


def api_alive(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status) == 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.healthcheck")
    parser.add_argument("role", choices=["poller", "worker", "api"])
    parser.add_argument("--port", type=int, default=8080, help="the API's port (api only)")
    args = parser.parse_args(argv)
    host = socket.gethostname()
    try:
        if args.role == "api":
            ok = api_alive(args.port)
        else:
            client, keys = _redis()
            with client:
                ok = (
                    poller_alive(client, keys, host)
                    if args.role == "poller"
                    else worker_alive(client, keys, host)
                )
    except (OSError, redis.RedisError, RuntimeError, ConfigError) as exc:
        print(f"unhealthy: {type(exc).__name__}: {exc}"[:500], file=sys.stderr)
        return 1
    if not ok:
        print(f"unhealthy: no live {args.role} on {host}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
