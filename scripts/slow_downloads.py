#!/usr/bin/env python3
"""Server RSS per slow download of a large file.

Usage: slow_downloads.py PORT PATH N PID [PID...] (RSS summed over the PIDs)

Opens N connections, each with a small receive buffer, sends `GET PATH`
on each, reads the response head and a first piece of the body, then
stops reading: every download is stalled with most of the file unsent,
as behind N slow clients. After SETTLE seconds, prints the RSS growth per
download in KiB (over the RSS before the first connection), then the
baseline RSS in KiB.
"""
import argparse
import resource
import socket
import time

# A script's own directory is first on sys.path: the sibling imports.
from idle_connections import rss_kib


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("n", type=int)
    parser.add_argument("pids", type=int, nargs="+")
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = f"GET {args.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    base = rss_kib(args.pids)
    sockets = []
    for _ in range(args.n):
        s = socket.socket()
        # A small window: the kernel holds little, the server the rest.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", args.port))
        s.settimeout(30)
        s.sendall(request)
        sockets.append(s)
    for s in sockets:
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("server closed a download")
            got += chunk
        if not got.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"unexpected answer: {got[:80]!r}")
    time.sleep(args.settle)
    grown = rss_kib(args.pids) - base
    print(f"{grown / args.n:.1f} {base}")
    for s in sockets:
        s.close()


if __name__ == "__main__":
    main()
