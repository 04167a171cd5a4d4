"""An HTTP/1.1 server that does no work: every POST gets the same body after the same delay.

    python benchmarks/support/noop_server.py DELAY BODY     # prints "no-op server on http://127.0.0.1:PORT ..."

``benchmarks/http.py`` runs it in its own process, as it runs ``python -m asynclab serve``, with
the body of one real chat completion and the model's latency in wall seconds. No framework, no
validation, no model: one ``asyncio.Protocol`` that finds the end of each request and schedules
its answer. The SDK's overhead against it is what any server would leave: the client's own.

A GET is answered at once with ``{"status":"ok"}`` (the benchmark's readiness check). Requests
are HTTP/1.1 with keep-alive and a ``Content-Length`` body, as the ``openai`` SDK sends them; the
answer carries as many headers as uvicorn's (date, server, content-length, content-type).
It lives in ``support/`` because CI runs every ``benchmarks/*.py`` as a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from email.utils import formatdate


def _response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ndate: " + formatdate(usegmt=True).encode() + b"\r\nserver: noop\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\ncontent-type: application/json\r\n\r\n" + body
    )


class _Connection(asyncio.Protocol):
    def __init__(self, delay: float, body: bytes) -> None:
        self.delay, self.body, self.buffer = delay, body, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, length = self.buffer[:end], 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            self.buffer = self.buffer[end + 4 + length:]
            if head.startswith(b"GET "):
                self._send(_response(b'{"status":"ok"}'))
            else:
                asyncio.get_running_loop().call_later(self.delay, self._send, _response(self.body))

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():  # the client may have left
            self.transport.write(data)


async def _serve(delay: float, body: bytes) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY, see serving.bind
    sock.bind(("127.0.0.1", 0))
    server = await asyncio.get_running_loop().create_server(lambda: _Connection(delay, body), sock=sock)
    print(f"no-op server on http://127.0.0.1:{sock.getsockname()[1]} (answers after {delay:g} s)", flush=True)
    await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python benchmarks/support/noop_server.py DELAY_SECONDS BODY", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, or the benchmark's SIGINT: a normal stop
        asyncio.run(_serve(float(argv[0]), argv[1].encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
