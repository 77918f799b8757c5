"""The HTTP API server of ``monitor.api_server`` on a free port, in a background thread.

Started through :func:`monitor.cli_serve.start_api`'s machinery with the real workers'
readers; ``stop()`` runs the server's own shutdown (streams end, Redis clients close).
"""

from __future__ import annotations

from aiohttp import web
from loop_thread import LoopThread

from monitor.api_server import start_api
from monitor.cli_serve import sources
from monitor.config import Config


class ApiThread(LoopThread):
    thread_name = "api-server"

    def __init__(self, config: Config, redis_url: str, host: str = "127.0.0.1") -> None:
        super().__init__()
        self.config, self.redis_url, self.host = config, redis_url, host
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _serve(self) -> None:
        self.runner = await start_api(
            self.config, self.redis_url, sources(), host=self.host, port=0
        )
        self.port = self.runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
