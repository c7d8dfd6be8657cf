"""Request bodies over h2c, sent by the `h2` library (a real client's
protocol engine), for what curl cannot be made to do on cue.

    python h2_client.py PORT CASE

Prints one line for the Rust test to assert on. Every wait is bounded by
a socket timeout.
"""

import socket
import sys

import h2.config
import h2.connection
import h2.events


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def headers(path, extra=()):
    return [(":method", "POST"), (":scheme", "http"), (":authority", "t"), (":path", path)] + list(extra)


class Exchange:
    """What the server sent on stream 1."""

    def __init__(self):
        self.interim = []
        self.status = None
        self.body = b""
        self.ended = False
        self.reset = None


def pump(sock, conn, seen, until):
    """Reads until `until(seen)` holds; False if the server closed first."""
    while not until(seen):
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False
        if not data:
            return False
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.InformationalResponseReceived):
                seen.interim.append(dict(event.headers)[b":status"].decode())
            elif isinstance(event, h2.events.ResponseReceived):
                seen.status = dict(event.headers)[b":status"].decode()
            elif isinstance(event, h2.events.DataReceived):
                seen.body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                seen.ended = True
            elif isinstance(event, h2.events.StreamReset):
                seen.reset = int(event.error_code)
            elif isinstance(event, h2.events.ConnectionTerminated):
                return False
        sock.sendall(conn.data_to_send())
    return True


def first_piece(port):
    # The handler answers after the first piece while the request is still
    # open: the body reaches it as it arrives, not once it is whole.
    sock, conn = connect(port)
    conn.send_headers(1, headers("/first"))
    conn.send_data(1, b"x" * 1000)
    sock.sendall(conn.data_to_send())
    seen = Exchange()
    pump(sock, conn, seen, lambda s: s.ended or s.reset is not None)
    print("answered", seen.status, seen.body.decode(), "while open")


def trailers(port):
    sock, conn = connect(port)
    conn.send_headers(1, headers("/count"))
    for _ in range(3):
        conn.send_data(1, b"y" * 10000)
    conn.send_headers(1, [("checksum", "abc")], end_stream=True)
    sock.sendall(conn.data_to_send())
    seen = Exchange()
    pump(sock, conn, seen, lambda s: s.ended or s.reset is not None)
    print(seen.status, seen.body.decode())


def expect_continue(port):
    sock, conn = connect(port)
    conn.send_headers(1, headers("/count", [("content-length", "5"), ("expect", "100-continue")]))
    sock.sendall(conn.data_to_send())
    seen = Exchange()
    if not pump(sock, conn, seen, lambda s: s.interim or s.status):
        print("no answer to the head")
        return
    got = "interim " + ",".join(seen.interim) if seen.interim else "final " + seen.status
    conn.send_data(1, b"hello", end_stream=True)
    sock.sendall(conn.data_to_send())
    pump(sock, conn, seen, lambda s: s.ended or s.reset is not None)
    print(got, "then", seen.status, seen.body.decode())


def early_refusal(port):
    # Announced far over the route's limit: refused from the head, the
    # refusal whole; what is sent after it is taken for a while, then the
    # stream is reset with NO_ERROR (RFC 9113 §8.1) so the client stops.
    sock, conn = connect(port)
    conn.send_headers(1, headers("/small/note", [("content-length", "10000000")]))
    conn.send_data(1, b"z" * 16000)
    sock.sendall(conn.data_to_send())
    seen = Exchange()
    pump(sock, conn, seen, lambda s: s.ended and s.reset is not None)
    print(seen.status, "ended" if seen.ended else "cut", "reset", seen.reset, seen.body.decode())


CASES = {
    "first_piece": first_piece,
    "trailers": trailers,
    "continue": expect_continue,
    "early_refusal": early_refusal,
}

if __name__ == "__main__":
    CASES[sys.argv[2]](int(sys.argv[1]))
