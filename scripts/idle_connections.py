#!/usr/bin/env python3
"""Server RSS per idle keep-alive connection.

Usage: idle_connections.py [--burst] [--tls] PORT N PID [PID...]
(RSS summed over the PIDs).

Default (one at a time): opens N connections, each sending one GET and
reading its response before the next opens; prints the RSS growth per
connection while they all sit idle.

--burst: opens all N connections first, then sends a GET on every one at
once, then reads every response; prints four figures: RSS growth per
connection while they sit idle just after the burst, and again once the
server has had time to trim its pools (--trim-wait seconds), RSS growth
over the baseline (KiB) once all are closed and it has had that time
again, and the baseline RSS (KiB).

--tls: the same over TLS (certificates are not verified).

--h2: the same over HTTP/2 (with --tls by ALPN, else h2c with prior
knowledge): the preface, one GET as a stream, and the SETTINGS ack.

--ws PATH: WebSocket instead: the upgrade request for PATH, read up to
its 101 head; the connection then sits open with no message.
"""
import argparse
import resource
import socket
import ssl
import time

REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n"
# HTTP/2: the preface, an empty SETTINGS, and HEADERS (END_STREAM |
# END_HEADERS) on stream 1: GET http, :path /plaintext, :authority bench
# (static-table HPACK, no Huffman).
H2_BLOCK = b"\x82\x86\x04\x0a/plaintext\x01\x05bench"
H2_REQUEST = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    + len(H2_BLOCK).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + H2_BLOCK
)
H2_SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
WS_PATH = None


def ws_request():
    return (
        f"GET {WS_PATH} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode()


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def read_until(s, end):
    """What the server sends until it ends with `end` (it sends nothing
    after that until asked)."""
    got = b""
    while not got.endswith(end):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("server closed a connection")
        got += chunk
    return got


def connect(port, context):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(30)
    if context:
        s = context.wrap_socket(s, server_hostname="localhost")
    return s


def ask(s, h2):
    if WS_PATH:
        s.sendall(ws_request())
        return
    s.sendall(H2_REQUEST if h2 else REQUEST)


def answer(s, h2):
    if WS_PATH:
        head = read_until(s, b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit("no 101: " + head.decode(errors="replace"))
        return
    read_until(s, b"Hello, World!")
    if h2:
        s.sendall(H2_SETTINGS_ACK)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--h2", action="store_true")
    parser.add_argument("--ws", metavar="PATH")
    parser.add_argument("--trim-wait", type=float, default=12.0)
    parser.add_argument("port", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("pids", nargs="+")
    args = parser.parse_args()
    global WS_PATH
    WS_PATH = args.ws
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    context = None
    if args.tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if args.h2:
            context.set_alpn_protocols(["h2"])
    before = rss_kib(args.pids)
    sockets = []
    if args.burst:
        sockets = [connect(args.port, context) for _ in range(args.count)]
        for s in sockets:
            ask(s, args.h2)
        for s in sockets:
            answer(s, args.h2)
    else:
        for _ in range(args.count):
            s = connect(args.port, context)
            ask(s, args.h2)
            answer(s, args.h2)
            sockets.append(s)
    time.sleep(1)  # let the server settle; this is a measurement, not a test
    idle = rss_kib(args.pids)
    per_connection = (idle - before) * 1024 / args.count
    if not args.burst:
        print(f"{per_connection:.0f}")
        return
    time.sleep(args.trim_wait)
    trimmed = (rss_kib(args.pids) - before) * 1024 / args.count
    for s in sockets:
        s.close()
    time.sleep(args.trim_wait)
    after = rss_kib(args.pids)
    print(f"{per_connection:.0f} {trimmed:.0f} {after - before} {before}")


if __name__ == "__main__":
    main()
