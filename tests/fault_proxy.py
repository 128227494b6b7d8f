"""A small HTTP proxy that fails chosen requests, in front of the GCS emulator.

`FaultProxy(upstream).inject(count, mode, when)` fails the next `count` requests for which
`when(method, path, body)` holds (a simple upload names its object in the body): `mode="503"` answers 503 Service Unavailable with a GCS-style JSON
error, `mode="reset"` resets the TCP connection (RST, no response). Every other request goes to
the upstream server unchanged; `Location` headers (resumable uploads) are rewritten to point
back at the proxy, so no request goes round it. `log` records what happened to each request.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Predicate = Callable[[str, str, bytes], bool]
MODES = ("503", "reset")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
}


def any_request(method: str, path: str, body: bytes) -> bool:
    return True


@dataclass
class Fault:
    count: int
    mode: str = "503"
    when: Predicate = any_request
    injected: int = 0


@dataclass
class Seen:
    method: str
    path: str
    outcome: str  # "503", "reset" or the upstream status


@dataclass
class FaultProxy:
    upstream: str  # http://host:port
    faults: list[Fault] = field(default_factory=list)
    log: list[Seen] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, count: int, mode: str = "503", when: Predicate = any_request) -> Fault:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: choose from {MODES}")
        fault = Fault(count, mode, when)
        with self._lock:
            self.faults.append(fault)
        return fault

    def injected(self) -> int:
        """Requests failed on purpose so far."""
        return sum(1 for seen in self.log if seen.outcome in MODES)

    def _decide(self, method: str, path: str, body: bytes) -> str | None:
        with self._lock:
            for fault in self.faults:
                if fault.injected < fault.count and fault.when(method, path, body):
                    fault.injected += 1
                    return fault.mode
        return None

    def _record(self, method: str, path: str, outcome: str) -> None:
        with self._lock:
            self.log.append(Seen(method, path, outcome))


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()  # the blank line after the last chunk
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as gcsfs' aiohttp session expects

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet test output

        def _forward(self) -> None:
            method, path = self.command, self.path
            body = _read_body(self)
            mode = proxy._decide(method, path, body)
            if mode == "reset":
                proxy._record(method, path, mode)
                # SO_LINGER 0: close() sends RST instead of FIN, as a dropped connection does
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()
                return
            if mode == "503":
                proxy._record(method, path, mode)
                payload = json.dumps(
                    {"error": {"code": 503, "message": "injected by the test's fault proxy"}}
                ).encode()
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Host"] = upstream.netloc
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            try:
                connection.request(method, path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                proxy._record(method, path, str(response.status))
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() in _HOP_BY_HOP:
                        continue
                    if key.lower() == "location":
                        value = value.replace(proxy.upstream, proxy.url)
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(data)
            finally:
                connection.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

    return Handler


@contextlib.contextmanager
def running_proxy(upstream: str, host: str = "127.0.0.1") -> Iterator[FaultProxy]:
    """Serve a FaultProxy for `upstream` from a background thread until the block ends."""
    proxy = FaultProxy(upstream.rstrip("/"))
    server = ThreadingHTTPServer((host, 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
