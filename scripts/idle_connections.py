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
"""
import argparse
import resource
import socket
import ssl
import time

REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def read_reply(s):
    reply = b""
    while not reply.endswith(b"Hello, World!"):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("server closed a connection")
        reply += chunk


def connect(port, context):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(30)
    if context:
        s = context.wrap_socket(s, server_hostname="localhost")
    return s


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--trim-wait", type=float, default=12.0)
    parser.add_argument("port", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("pids", nargs="+")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    context = None
    if args.tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    before = rss_kib(args.pids)
    sockets = []
    if args.burst:
        sockets = [connect(args.port, context) for _ in range(args.count)]
        for s in sockets:
            s.sendall(REQUEST)
        for s in sockets:
            read_reply(s)
    else:
        for _ in range(args.count):
            s = connect(args.port, context)
            s.sendall(REQUEST)
            read_reply(s)
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


main()
