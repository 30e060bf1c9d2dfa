"""Serve the browser demo (demo/web) with an export's batch-1 TFLite decoder, on 127.0.0.1 only.

URL layout:
    /                      demo/web/index.html (+ main.js, style.css)
    /vendor/core/...       node_modules/@litertjs/core/dist
    /vendor/wasm-utils/... node_modules/@litertjs/wasm-utils/dist
    /wasm/...              node_modules/@litertjs/core/wasm (LiteRT.js's WebAssembly)
    /model/decoder_b1.tflite, /model/model_card.json   from EXPORT_DIR/tflite/<latest>/

No TensorFlow is imported, and nothing is fetched from outside this machine.
"""

from __future__ import annotations

import http.server
import mimetypes
from functools import partial
from pathlib import Path

from .errors import TfvaeError
from .lite import tflite_dir

WEB = Path(__file__).resolve().parents[1] / "demo" / "web"
MODULES = WEB / "node_modules" / "@litertjs"
MIME = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".css": "text/css",
        ".html": "text/html; charset=utf-8", ".json": "application/json", ".tflite": "application/octet-stream",
        ".map": "application/json"}


def routes(export_dir) -> dict:
    """URL prefix -> folder (or file) served under it.

    Raises:
        TfvaeError: no batch-1 TFLite decoder in ``export_dir``, or LiteRT.js not installed.
    """
    folder = tflite_dir(export_dir)
    model = folder / "decoder_b1.tflite"
    if not model.is_file():
        raise TfvaeError(f"{export_dir} has no decoder_b1.tflite (export it with: python cli.py export RUN_DIR --tflite)")
    if not (MODULES / "core" / "dist" / "index.js").is_file():
        raise TfvaeError(f"LiteRT.js is not installed in {WEB}: run (cd demo/web && npm ci)")
    return {
        "/vendor/core/": MODULES / "core" / "dist",
        "/vendor/wasm-utils/": MODULES / "wasm-utils" / "dist",
        "/wasm/": MODULES / "core" / "wasm",
        "/model/decoder_b1.tflite": model,
        "/model/model_card.json": folder / "model_card.json",
        "/": WEB,
    }


class DemoHandler(http.server.SimpleHTTPRequestHandler):
    """Static files from the route table; ``..`` and anything outside it answer 404."""

    def __init__(self, *args, table=None, **kwargs):
        self.table = table
        super().__init__(*args, directory=str(WEB), **kwargs)

    def translate_path(self, path):
        path = path.split("?", 1)[0].split("#", 1)[0]
        if ".." in path.split("/"):
            return ""
        if path == "/":
            path = "/index.html"
        for prefix, target in self.table.items():
            if path == prefix and target.is_file():
                return str(target)
            if prefix.endswith("/") and path.startswith(prefix):
                candidate = target / path[len(prefix):]
                if prefix == "/" and candidate.resolve().is_relative_to(WEB / "node_modules"):
                    return ""  # only the vendor routes expose node_modules
                return str(candidate)
        return ""

    def guess_type(self, path):
        return MIME.get(Path(path).suffix, mimetypes.guess_type(path)[0] or "application/octet-stream")

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, fmt, *args):  # quiet: one line per request is noise in a demo
        pass


def make_server(export_dir, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """Bind the demo server to 127.0.0.1:``port`` (0 picks a free port).

    Raises:
        TfvaeError: the port is in use or not allowed, or the export lacks a TFLite decoder.
    """
    table = routes(export_dir)
    if not 0 <= port <= 65535:
        raise TfvaeError(f"--port must be between 0 and 65535, got {port}")
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), partial(DemoHandler, table=table))
    except OSError as exc:
        raise TfvaeError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None
