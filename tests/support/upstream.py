"""A real Python upstream for percore's HTTP client tests (standard library
only): HTTP/1.1 keep-alive and an HTTP/1.0 body delimited by close, over
TCP, a Unix socket, and optionally TLS that requires a client certificate.

    python3 upstream.py --unix PATH [--tls CERT KEY CA]

Prints "tcp PORT" (and "tls PORT") then "ready", and serves until killed.
"""

import argparse
import http.server
import json
import socketserver
import ssl
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/hello":
            self.reply(200, b"hello from python")
        elif self.path == "/until-close":
            # HTTP/1.0 without Content-Length: the body ends at close.
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            self.wfile.write(b"x" * 100000)
            self.close_connection = True
        elif self.path == "/truncated":
            # Promises 1000 bytes, sends 10, and closes: a server killed mid-body.
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            self.close_connection = True
        elif self.path == "/peer":
            cert = getattr(self.connection, "getpeercert", lambda: None)()
            subject = dict(x[0] for x in cert["subject"]) if cert else {}
            names = [v for k, v in cert.get("subjectAltName", ())] if cert else []
            self.reply(200, json.dumps({"subject": subject, "names": names}).encode(),
                       "application/json")
        else:
            self.reply(404, b"no such path")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        try:
            value = json.loads(body)
        except ValueError:
            self.reply(400, b"not json")
            return
        self.reply(200, json.dumps({"got": value}).encode(), "application/json")


class TcpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        request, _ = super().get_request()
        # BaseHTTPRequestHandler wants an (address, port) pair.
        return request, ("unix", 0)


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--unix", required=True)
    parser.add_argument("--tls", nargs=3, metavar=("CERT", "KEY", "CA"))
    args = parser.parse_args()
    tcp = TcpServer(("127.0.0.1", 0), Handler)
    serve(tcp)
    print("tcp", tcp.server_address[1])
    unix = UnixServer(args.unix, Handler)
    serve(unix)
    if args.tls:
        cert, key, ca = args.tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
        tls = TcpServer(("127.0.0.1", 0), Handler)
        tls.socket = context.wrap_socket(tls.socket, server_side=True)
        serve(tls)
        print("tls", tls.server_address[1])
    print("ready")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
