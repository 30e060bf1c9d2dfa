"""Serve the browser demo (demo/web) with an export's batch-1 TFLite decoder, on 127.0.0.1 only.

URL layout:
    /                      demo/web/index.html (+ main.js, style.css)
    /vendor/core/...       node_modules/@litertjs/core/dist
    /vendor/wasm-utils/... node_modules/@litertjs/wasm-utils/dist
    /wasm/...              node_modules/@litertjs/core/wasm (LiteRT.js's WebAssembly)
    /model/decoder_b1.tflite, /model/model_card.json   from EXPORT_DIR/tflite/<latest>/, read into memory
                           once at start (after the SHA-256 check): later changes to the export are not served

No TensorFlow is imported, and nothing is fetched from outside this machine.
"""

from __future__ import annotations

import http.server
import mimetypes
from functools import partial
from pathlib import Path, PurePosixPath

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
        TfvaeError: no batch-1 TFLite decoder in ``export_dir``, a file that differs from the
            SHA-256 in the model card, a decoder whose shapes differ from the card's, or
            LiteRT.js not installed.
    """
    folder = tflite_dir(export_dir)
    model = folder / "decoder_b1.tflite"
    from .lite import read_card

    if read_card(folder).get("decoder_input", {}).get("name", "z") != "z":
        raise TfvaeError(f"{export_dir}: the browser demo decodes z ~ N(0, I), and this export's decoder takes a grid "
                         f"of codes from its autoregressive prior; generate with: python cli.py generate {export_dir}")
    if not model.is_file():
        raise TfvaeError(f"{export_dir} has no decoder_b1.tflite (export it with: python cli.py export RUN_DIR --tflite)")
    from .lite import check_decoder_shapes, load_decoder, verify_export

    card = verify_export(folder)
    check_decoder_shapes(load_decoder(model), card, model)
    if not (MODULES / "core" / "dist" / "index.js").is_file():
        raise TfvaeError(f"LiteRT.js is not installed in {WEB}: run (cd demo/web && npm ci)")
    return {
        "/vendor/core/": MODULES / "core" / "dist",
        "/vendor/wasm-utils/": MODULES / "wasm-utils" / "dist",
        "/wasm/": MODULES / "core" / "wasm",
        "/model/decoder_b1.tflite": _verified_bytes(model, card),
        "/model/model_card.json": (folder / "model_card.json").read_bytes(),
        "/": WEB,
    }


def _verified_bytes(path: Path, card: dict) -> bytes:
    """The file's bytes, read once at start and checked against the model card's SHA-256, so
    what the export folder holds later (a file swapped for a symlink) is never served."""
    import hashlib

    data = path.read_bytes()
    listed = {Path(e.get("path", "")).name: e.get("sha256") for e in card["files"] if isinstance(e, dict)
              and e.get("path", "").startswith(f"tflite/{path.parent.name}/")}
    if hashlib.sha256(data).hexdigest() != listed.get(path.name):
        raise TfvaeError(f"{path}: its SHA-256 differs from the model card's; the export changed while it was read")
    return data


PAGE_FILES = ("index.html", "main.js", "style.css")  # the demo's own page; nothing else of demo/web is served
ALLOWED_HOSTS = ("127.0.0.1", "localhost")


def resolve_request(table: dict, raw_path: str):
    """The file a GET of ``raw_path`` may read (a Path, or the bytes held in memory for a
    single-file route), or None (answered 404).

    The path is percent-decoded once; it is refused when it holds ``..``, a backslash,
    a NUL or an empty segment (``//``), and the resolved file (symlinks followed) must lie
    inside the folder of the route it came through: a route never reads outside its own
    folder. The ``/`` route serves only :data:`PAGE_FILES`.
    """
    from urllib.parse import unquote

    path = unquote(raw_path.split("?", 1)[0].split("#", 1)[0], errors="strict")
    if not path.startswith("/") or "\\" in path or "\x00" in path:
        return None
    if path == "/":
        path = "/index.html"
    segments = path[1:].split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        return None
    for prefix, target in table.items():
        if isinstance(target, bytes):
            if path == prefix:
                return target
            continue
        if prefix == "/":
            if len(segments) == 1 and segments[0] in PAGE_FILES:
                candidate, root = (target / segments[0]).resolve(), target.resolve()
                return candidate if candidate.is_file() and candidate.parent == root else None
            continue
        if path.startswith(prefix):
            root = target.resolve()
            candidate = (root / path[len(prefix):]).resolve()
            return candidate if candidate.is_relative_to(root) and candidate.is_file() else None
    return None


class DemoHandler(http.server.BaseHTTPRequestHandler):
    """GET/HEAD of the route table's files only.

    Every other path (traversal in any encoding, doubled slashes, symlinks leading out of
    a route's folder, folders) answers 404; a ``Host`` header other than 127.0.0.1 or
    localhost (with any port) answers 421, so a DNS-rebinding page cannot read the demo
    from another origin; methods other than GET and HEAD answer 405.
    """

    server_version = "tfvae-demo"
    sys_version = ""

    def __init__(self, *args, table=None, **kwargs):
        self.table = table
        super().__init__(*args, **kwargs)

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            return False
        name, _, port = host.partition(":")
        return name in ALLOWED_HOSTS and (port == "" or (port.isascii() and port.isdigit()))

    def _serve(self, body: bool):
        if not self._host_allowed():
            return self.send_error(421, "Misdirected Request: this server answers to 127.0.0.1 or localhost only")
        try:
            path = resolve_request(self.table, self.path)
        except UnicodeDecodeError:
            path = None
        if path is None:
            return self.send_error(404, "Not Found")
        if isinstance(path, bytes):
            data, name = path, PurePosixPath(self.path.split("?", 1)[0])
        else:
            data, name = path.read_bytes(), path
        self.send_response(200)
        self.send_header("Content-Type", MIME.get(name.suffix, mimetypes.guess_type(name.name)[0]
                                                  or "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._serve(body=True)

    def do_HEAD(self):  # noqa: N802
        self._serve(body=False)

    def _refuse(self):
        self.send_error(405, "Method Not Allowed")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

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
