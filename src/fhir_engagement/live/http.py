"""The HTTP server under the serve app: limits that keep slow or many clients from starving it.

aiohttp bounds a body's size (``client_max_size``) and idle keep-alive, but sets no deadline for a
request's headers and no cap on connections: slow clients held file descriptors until none were
left, and asyncio then logged a traceback per refused accept (hundreds of MB a minute). Here a
connection must send its first request's headers within ``header_timeout``, at most
``max_connections`` are open at once (more are closed on arrival, counted), the open-file limit
is raised to its hard limit, and asyncio's accept-failure log is kept to one line a minute. The
body's own deadline is the /notify route's (routes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import time
from collections.abc import Callable

from aiohttp import web

from fhir_engagement.config import Settings

__all__ = ["serve"]

_LOG = logging.getLogger(__name__)
_HEAD_END = b"\r\n\r\n"


async def serve(app: web.Application, settings: Settings,
                stop: asyncio.Event | None = None) -> None:
    """Run ``app`` on the settings' address until SIGINT/SIGTERM (or ``stop`` is set), then clean
    up gracefully."""
    _raise_file_limit()
    logging.getLogger("asyncio").addFilter(_OncePerMinute("socket.accept() out of system"))
    runner = web.AppRunner(app, keepalive_timeout=settings.keepalive_timeout)
    await runner.setup()
    loop = asyncio.get_running_loop()
    if runner.server is None:  # setup() always makes one
        raise RuntimeError("the HTTP runner has no server after setup")
    guard = _Limits(runner.server, settings.max_connections, settings.header_timeout)
    try:
        server = await loop.create_server(guard.connection, settings.host, settings.port,
                                          backlog=settings.max_connections)
    except OSError:
        await runner.cleanup()
        raise
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        await runner.cleanup()


class _Limits:
    """The protocol factory: a guarded aiohttp handler per connection, or a refusal."""

    def __init__(self, handlers: Callable[[], asyncio.Protocol], cap: int,
                 header_timeout: float) -> None:
        self.handlers, self.cap, self.header_timeout = handlers, cap, header_timeout
        self.open = 0
        self.refused = 0

    def connection(self) -> asyncio.Protocol:
        if self.open >= self.cap:
            self.refused += 1
            return _Refused()
        self.open += 1
        return _Guarded(self.handlers(), self)


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _Guarded(asyncio.Protocol):
    """One connection: counted, and closed if its first request's headers are slow to come."""

    def __init__(self, inner: asyncio.Protocol, limits: _Limits) -> None:
        self.inner, self.limits = inner, limits
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.limits.header_timeout, transport.close)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            self._tail = (self._tail + data)[-(len(data) + 3):]
            if _HEAD_END in self._tail:
                self._timer.cancel()
                self._timer, self._tail = None, b""
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.limits.open -= 1
        self.inner.connection_lost(exc)


def _raise_file_limit() -> None:
    """As many open files as the system allows this process (the default soft limit is low)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _OncePerMinute(logging.Filter):
    """Lets a record whose message starts with ``prefix`` through at most once a minute."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix, self.last = prefix, 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        now = time.monotonic()
        if now - self.last < 60:
            return False
        self.last = now
        return True
