"""A real HTTP server on 127.0.0.1 for downloader tests: Range support and injected faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Site:
    """What the server serves (`files`: URL path -> bytes) and the faults to inject."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}  # path -> close the connection after N bytes, once
        self.requests: list[tuple[str, str]] = []  # (path, Range header)
        self.rate: dict[str, int] = {}  # path -> bytes per second (slow links, for kill tests)
        self.base = ""

    def url(self, path: str) -> str:
        return self.base + path


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path = self.path.split("?")[0]
            site.requests.append((path, self.headers.get("Range", "")))
            body = site.files.get(path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            cut = site.drop_after.pop(path, None)
            if cut is not None:
                self.wfile.write(payload[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            rate = site.rate.get(path)
            if rate is None:
                self.wfile.write(payload)
                return
            chunk = 16 << 10
            for i in range(0, len(payload), chunk):
                try:
                    self.wfile.write(payload[i:i + chunk])
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client was killed
                time.sleep(chunk / rate)

    return Handler


@contextmanager
def serve(site: Site) -> Iterator[Site]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
