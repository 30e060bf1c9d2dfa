"""Hostile requests against the demo server: it serves only its own files, to 127.0.0.1 only.

Every route is tried with each path-traversal form (plain, percent-encoded, double-encoded,
doubled and leading slashes, backslashes, NUL, absolute-form URIs); symlinks leading out of
a route's folder are tried on a table of temporary folders; foreign ``Host`` headers (DNS
rebinding) are refused. Nothing outside the routes may be read.
"""

import os
import socket
import threading

import pytest

from conftest import ROOT

WEB = ROOT / "demo" / "web"
FORMS = [
    "{p}" + "../" * 8 + "etc/passwd",
    "{p}" + "%2e%2e/" * 8 + "etc/passwd",
    "{p}" + "%2E%2E%2F" * 8 + "etc%2Fpasswd",
    "{p}" + "..%2f" * 8 + "etc/passwd",
    "{p}" + "%252e%252e/" * 8 + "etc/passwd",
    "{p}" + ".%2e/" * 8 + "etc/passwd",
    "{p}" + "....//" * 8 + "etc/passwd",
    "{p}/etc/passwd",
    "{p}%2Fetc%2Fpasswd",
    "{p}" + "..\\" * 8 + "etc\\passwd",
    "{p}" + "%5c..%5c" * 8 + "etc/passwd",
    "{p}%00../../../../../../etc/passwd",
    "{p}./../package.json",
    "{p}../package.json",
    "{p}../../package.json",
    "{p}../../../package.json",
    "{p}../../../../package.json",
    "{p}%2e%2e/%2e%2e/%2e%2e/package.json",
    "{p}..;/..;/package.json",
    "http://127.0.0.1{p}../../../../etc/passwd",
]
OUTSIDE = ["/package.json", "/package-lock.json", "/test/e2e.mjs", "/node_modules/@litertjs/core/package.json",
           "//etc/passwd", "///etc/passwd", "/model/", "/model/../model_card.json", "/model/decoder_b1.tflite/..",
           "/vendor/", "/vendor/core/", "/vendor/core/../../../package.json", "/wasm/", "/.", "/..", "/%2e%2e"]


def request(port, path, host="127.0.0.1", method="GET"):
    """One raw HTTP/1.1 request, bytes exactly as given; returns (status, body)."""
    head = f"{method} {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "") + \
        "Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode("latin-1"))
        data = b""
        while True:
            block = s.recv(65536)
            if not block:
                break
            data += block
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture()
def server(export_dir):
    from tfvae.demo import make_server

    if not (WEB / "node_modules" / "@litertjs" / "core").is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("LiteRT.js is not installed: (cd demo/web && npm ci)")
        pytest.skip("LiteRT.js is not installed: (cd demo/web && npm ci)")
    srv = make_server(export_dir, 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def secrets(export_dir):
    """Byte strings that must never appear in a response."""
    out = [b"root:x:0:0", (WEB / "package.json").read_bytes()[:60], (WEB / "test" / "e2e.mjs").read_bytes()[:60]]
    out.append((WEB / "node_modules" / "@litertjs" / "core" / "package.json").read_bytes()[:60])
    return out


def test_every_route_refuses_every_traversal_form(server, export_dir):
    from tfvae.demo import routes

    port = server.server_address[1]
    forbidden = secrets(export_dir)
    tried = []
    for prefix in routes(export_dir):
        base = prefix if prefix.endswith("/") else prefix + "/"
        for form in FORMS:
            tried.append(form.format(p=base))
    tried += OUTSIDE
    leaks = []
    for path in tried:
        status, body = request(port, path)
        if status == 200 or any(s in body for s in forbidden):
            leaks.append((path, status))
    print(f"demo server: {len(tried)} hostile paths over {len(routes(export_dir))} routes, "
          f"{len(tried) - len(leaks)} refused (404/400), {len(leaks)} served")
    assert not leaks, leaks
    # The demo's own files are still served.
    for path in ("/", "/index.html", "/main.js", "/style.css", "/vendor/core/index.js", "/model/decoder_b1.tflite",
                 "/model/model_card.json"):
        status, body = request(port, path)
        assert status == 200 and body, path


def test_foreign_host_headers_are_refused(server):
    port = server.server_address[1]
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.evil.example",
                 "localhost@evil.example", "[::1]", "10.0.0.1", "", None):
        status, body = request(port, "/", host=host)
        assert status == 421, (host, status)
        assert b"<html" not in body.lower() or b"misdirected" in body.lower()
    for host in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}"):
        assert request(port, "/", host=host)[0] == 200, host
    print("Host header: 9 foreign forms answered 421; 127.0.0.1 and localhost answered 200")


def test_methods_other_than_get_and_head_are_refused(server):
    port = server.server_address[1]
    assert request(port, "/", method="HEAD")[0] == 200
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        assert request(port, "/", method=method)[0] == 405, method


def test_symlinks_out_of_every_route_folder_are_not_followed(tmp_path):
    from tfvae.demo import resolve_request

    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    table, folders = {}, {}
    for prefix in ("/vendor/core/", "/vendor/wasm-utils/", "/wasm/", "/"):
        folder = tmp_path / prefix.strip("/").replace("/", "_") if prefix != "/" else tmp_path / "web"
        folder.mkdir()
        (folder / "index.js").write_text("ok")
        (folder / "index.html").write_text("ok")
        (folder / "main.js").symlink_to(secret)  # a page file that is a link to outside
        (folder / "evil.js").symlink_to(secret)
        (folder / "sub").symlink_to(tmp_path)  # a folder link to the parent
        table[prefix], folders[prefix] = folder, folder
    table["/model/model_card.json"] = b'{"card": 1}'
    for prefix in ("/vendor/core/", "/vendor/wasm-utils/", "/wasm/"):
        assert resolve_request(table, prefix + "index.js") == (folders[prefix] / "index.js").resolve()
        for path in ("evil.js", "sub/secret.txt", "main.js"):
            assert resolve_request(table, prefix + path) is None, prefix + path
    assert resolve_request(table, "/") == (folders["/"] / "index.html").resolve()
    assert resolve_request(table, "/main.js") is None  # the link leads outside the page folder
    assert resolve_request(table, "/sub/secret.txt") is None
    assert resolve_request(table, "/model/model_card.json") == b'{"card": 1}'  # a single-file route: its bytes
    assert resolve_request(table, "/model/model_card.json/") is None


def test_export_files_swapped_for_symlinks_after_start_are_never_served(export_dir, tmp_path):
    """The model files are read (and checked against the card's SHA-256) once, at start: an
    export whose decoder and card are replaced by symlinks to another file afterwards still
    serves the verified bytes, never the link's target."""
    import shutil

    from conftest import require_litertjs
    from tfvae.demo import make_server

    require_litertjs()
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 secret")
    srv = make_server(copy, 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        port = srv.server_address[1]
        before = {p: request(port, p)[1] for p in ("/model/decoder_b1.tflite", "/model/model_card.json")}
        version = next((copy / "tflite").iterdir())
        for name in ("decoder_b1.tflite", "model_card.json"):
            (version / name).unlink()
            (version / name).symlink_to(secret)
        for path, body in before.items():
            status, now = request(port, path)
            assert status == 200 and now == body and b"secret" not in now, path
    finally:
        srv.shutdown()
        srv.server_close()
