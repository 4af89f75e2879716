"""Real HTTP receivers on 127.0.0.1."""

import http.server
import json
import socketserver
import ssl
import threading
import time


class Receiver:
    """A real HTTP server on 127.0.0.1 that records each request.

    `behaviour(n, request)` returns (status, headers, body, delay_seconds) for
    the n-th request (1-based); the default answers 204 at once. With
    `tls=(certfile, keyfile)` it serves HTTPS, as https://localhost:<port>;
    with `client_ca` (a PEM file) as well, only clients presenting a
    certificate that CA signed get in (mutual TLS), and each request records
    the subject of the certificate it came with (`peer`)."""

    def __init__(self, behaviour=None, port=0, tls=None, client_ca=None):
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.behaviour = behaviour or (lambda n, req: (204, {}, b"", 0))
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with receiver.lock:
                    receiver.connections += 1

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                req = {
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "path": self.path,
                    "at": time.time(),
                }
                if isinstance(self.connection, ssl.SSLSocket):
                    cert = self.connection.getpeercert() or {}
                    req["peer"] = dict(x[0] for x in cert.get("subject", ()))
                with receiver.lock:
                    receiver.requests.append(req)
                    n = len(receiver.requests)
                status, headers, out, delay = receiver.behaviour(n, req)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    if isinstance(out, int):
                        # A huge body, streamed without holding it in memory.
                        self.send_header("content-length", str(out))
                        self.end_headers()
                        chunk = b"x" * 65536
                        sent = 0
                        while sent < out:
                            self.wfile.write(chunk[: min(len(chunk), out - sent)])
                            sent += len(chunk)
                    else:
                        self.send_header("content-length", str(len(out)))
                        self.end_headers()
                        self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        if client_ca and not tls:
            raise ValueError("client_ca needs tls")
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            if client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(str(client_ca))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def ids(self):
        with self.lock:
            return [r["headers"]["webhook-id"] for r in self.requests]

    def events(self):
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
