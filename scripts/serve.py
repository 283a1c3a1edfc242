#!/usr/bin/env python3
"""sinkscope's static server (`make serve`, and the e2e tests): serves dist/ on 127.0.0.1 only.

* Precompressed files: a request for `x` is answered with `x.gz` (Content-Encoding: gzip) when the
  browser accepts gzip and `make web` wrote one (the wasm shrinks about 5x).
* A strict Content-Security-Policy on every response (the page's own origin only; the wasm needs
  'wasm-unsafe-eval'; figures are blob: images; no inline script or style), plus nosniff.
* Cross-origin isolation (COOP same-origin, COEP require-corp), so the CPU worker may share memory
  with its helper workers.
* No directory listings, no paths outside dist/, no methods but GET and HEAD.

Usage: serve.py [--port N] [--dir DIR]   (port 0 picks a free one; the chosen URL is printed first)
"""
import argparse
import email.utils
import http.server
import mimetypes
import os
import posixpath
import sys
import urllib.parse

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "worker-src 'self'",
    "connect-src 'self' blob:",
    "img-src 'self' blob: data:",
    "style-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm", ".json": "application/json", ".gguf": "application/octet-stream", ".svg": "image/svg+xml",
}


class Handler(http.server.BaseHTTPRequestHandler):
    root = "dist"
    server_version = "sinkscope"

    def log_message(self, fmt, *args):  # quiet: one line per error only
        if args and str(args[1]).startswith(("4", "5")):
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def resolve(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in posixpath.normpath(path).split("/") if p not in ("", ".", "..")]
        full = os.path.join(os.path.abspath(self.root), *parts)
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        return full

    def send_file(self, head):
        full = self.resolve()
        if not full.startswith(os.path.abspath(self.root)) or not os.path.isfile(full):
            self.send_error(404, "not found")
            return
        encoding = None
        if "gzip" in self.headers.get("Accept-Encoding", "") and os.path.isfile(full + ".gz") and os.path.getmtime(full + ".gz") >= os.path.getmtime(full):
            body_path, encoding = full + ".gz", "gzip"
        else:
            body_path = full
        size = os.path.getsize(body_path)
        ext = os.path.splitext(full)[1]
        self.send_response(200)
        self.send_header("Content-Type", TYPES.get(ext) or mimetypes.guess_type(full)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(size))
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Last-Modified", email.utils.formatdate(os.path.getmtime(full), usegmt=True))
        self.send_header("Content-Security-Policy", CSP)
        # cross-origin isolation: the CPU worker shares memory with its helper workers
        # (SharedArrayBuffer); every file is our own, so nothing else is affected
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if head:
            return
        with open(body_path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return

    def do_GET(self):
        self.send_file(head=False)

    def do_HEAD(self):
        self.send_file(head=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--dir", default="dist")
    args = ap.parse_args()
    Handler.root = args.dir
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("http://127.0.0.1:%d/" % httpd.server_address[1], flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
