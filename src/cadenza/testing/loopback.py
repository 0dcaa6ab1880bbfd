"""A real HTTP server on 127.0.0.1 for downloader tests: Range support and injected faults.

The faults are what a hostile or broken network does: drop the connection, drip bytes,
answer 200 with an HTML error page, leave out Content-Length and stop early, send garbage
instead of a status line, redirect elsewhere. `serve(site, tls=...)` speaks https.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Site:
    """What the server serves (`files`: URL path -> bytes) and the faults to inject."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}  # path -> close the connection after N bytes, once
        self.requests: list[tuple[str, str]] = []  # (path, Range header)
        self.rate: dict[str, int] = {}  # path -> bytes per second (slow links, for kill tests)
        self.drip: dict[str, float] = {}  # path -> seconds between single bytes
        self.no_length: set[str] = set()  # paths served without Content-Length
        self.bad_status: dict[str, int] = {}  # path -> next N requests get a garbage status
        self.error_page: set[str] = set()  # paths answered 200 with an HTML error page
        self.redirect: dict[str, str] = {}  # path -> 302 to this URL
        self.etag: dict[str, str] = {}  # path -> its ETag (then If-Range is honoured)
        self.if_range: list[str] = []  # the If-Range header of each request ("" = none)
        self.resume_from_zero: set[str] = set()  # paths that answer a Range with the whole
        # body as a 206 from byte 0 (a broken cache or proxy)
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
            site.if_range.append(self.headers.get("If-Range", ""))
            if site.bad_status.get(path, 0) > 0:
                site.bad_status[path] -= 1
                self.wfile.write(b"GARBAGE \x00\xff not http\r\n\r\n")
                self.close_connection = True
                return
            if path in site.redirect:
                self.send_response(302)
                self.send_header("Location", site.redirect[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = site.files.get(path)
            if path in site.error_page:
                body = ERROR_PAGE
            if body is None:
                self.send_error(404)
                return
            start = 0
            rng = self.headers.get("Range", "")
            if_range = self.headers.get("If-Range")
            if if_range is not None and if_range != site.etag.get(path):
                rng = ""  # another version than the client's: the whole new file
            if rng.startswith("bytes="):
                start = 0 if path in site.resume_from_zero else int(rng[6:].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            if path in site.etag:
                self.send_header("ETag", site.etag[path])
            if path not in site.no_length:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if path in site.drip:
                _drip(self, payload, site.drip[path])
                return
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
                    self.wfile.write(payload[i : i + chunk])
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client was killed
                time.sleep(chunk / rate)

    return Handler


ERROR_PAGE = b"<html><body><h1>Service unavailable</h1></body></html>"


def _drip(handler: BaseHTTPRequestHandler, payload: bytes, every_s: float) -> None:
    """One byte at a time, until the body is sent or the client hangs up."""
    for i in range(len(payload)):
        try:
            handler.wfile.write(payload[i : i + 1])
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        time.sleep(every_s)


@contextmanager
def serve(site: Site, tls: tuple[Path, Path] | None = None) -> Iterator[Site]:
    """Serve `site` on a free port; with `tls` (certificate, key), over https."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    site.base = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
