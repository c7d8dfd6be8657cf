#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, sends one GET on each and reads
its response, then prints the server's RSS growth per connection while they
sit idle. Usage: idle_connections.py PORT N PID [PID...]  (RSS summed over PIDs)."""
import socket
import sys
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def main():
    port, count, pids = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    request = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n"
    before = rss_kib(pids)
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(10)
        s.sendall(request)
        reply = b""
        while not reply.endswith(b"Hello, World!"):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("server closed a connection")
            reply += chunk
        sockets.append(s)
    time.sleep(1)  # let the server settle; this is a measurement, not a test
    after = rss_kib(pids)
    print(f"{(after - before) * 1024 / count:.0f}")
    for s in sockets:
        s.close()


main()
