"""A real upstream for the reverse-proxy tests (tests/proxy.rs): Python's
HTTP/1.1 server with the endpoints a proxy must carry, and the failures it
must survive. Prints "port N" per listener, then "ready".

  /echo...        JSON: method, target, header fields, body length and sum
  /stream?n=K     K chunks, chunked, each flushed
  /big?bytes=N    N bytes with Content-Length
  /slow?ms=M      answers after M ms
  /reset          declares 1000 bytes, sends 100, then resets
  /reset-chunked  one chunk, then resets
  /ws             Upgrade: websocket -> 101, then echoes bytes
  /connections    connections this listener accepted
  /sent           body bytes /big has written so far, over all requests
  /health         200, or 503 after POST /health/down (and 200 after /health/up)
  /whoami         the listener's own port
  /then-close     answers as if kept alive, then closes the connection
"""

import argparse
import base64
import hashlib
import json
import socket
import struct
import sys
import threading
import time
import http.server
from urllib.parse import urlsplit, parse_qs


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "keep-alive, X-Upstream-Hop")
        self.send_header("X-Upstream-Hop", "must not pass")
        self.send_header("Keep-Alive", "timeout=30")
        self.send_header("X-Port", str(self.server.server_address[1]))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data, "chunked"
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(length), ("length" if "Content-Length" in self.headers else "none")

    def handle_any(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path.startswith("/echo"):
            body, framing = self.read_body()
            out = {
                "method": self.command,
                "target": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_len": len(body),
                "body_sum": sum(body) % 1000003,
                "framing": framing,
            }
            return self.reply(200, json.dumps(out).encode(), "application/json")
        if self.command == "POST" and url.path.startswith("/health/"):
            self.read_body()
            self.server.healthy = url.path == "/health/up"
            return self.reply(200, b"ok")
        if url.path == "/health":
            return self.reply(200 if self.server.healthy else 503, b"health")
        if url.path == "/then-close":
            self.reply(200, b"bye")
            self.wfile.flush()
            self.close_connection = True
            return
        if url.path == "/whoami":
            return self.reply(200, str(self.server.server_address[1]).encode())
        if url.path == "/sent":
            return self.reply(200, str(self.server.sent).encode())
        if url.path == "/connections":
            return self.reply(200, str(self.server.accepted).encode())
        if url.path == "/big":
            size = int(query.get("bytes", ["0"])[0])
            block = bytes(range(256)) * 256
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = size if self.command == "HEAD" else 0
            while sent < size:
                piece = block[: min(len(block), size - sent)]
                self.wfile.write(piece)
                sent += len(piece)
                self.server.sent += len(piece)
            return
        if url.path == "/stream":
            n = int(query.get("n", ["3"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                piece = f"piece {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(0.01)
            self.wfile.write(b"0\r\n\r\n")
            return
        if url.path == "/slow":
            time.sleep(int(query.get("ms", ["1000"])[0]) / 1000)
            return self.reply(200, b"slow")
        if url.path in ("/reset", "/reset-chunked"):
            if url.path == "/reset":
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100
            else:
                head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            self.wfile.write(head)
            self.wfile.flush()
            time.sleep(0.05)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if url.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(
                hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
            ).decode()
            self.wfile.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
            )
            self.wfile.flush()
            # Echo raw bytes until the client closes.
            while True:
                data = self.connection.recv(65536)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
            return
        return self.reply(404, b"no such path")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client (the proxy) that went away mid-response is expected here.
        pass

    def __init__(self, *args):
        super().__init__(*args)
        self.accepted = 0
        self.healthy = True
        self.sent = 0

    def get_request(self):
        pair = super().get_request()
        self.accepted += 1
        return pair


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listeners", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.listeners):
        server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print("port", server.server_address[1])
    print("ready")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
