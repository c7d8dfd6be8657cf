"""HTTP/2 conformance, case by case: RFC 9113's and RFC 7541's MUSTs that a
server can be tested on, sent frame by frame the way h2spec does.

    python h2_conformance.py PORT [--tls] [CASE ...]

Each case opens its own connection, sends exactly the frames it names and
reads what comes back until it has a verdict or a bounded wait passes.
Prints one line per case, "ok ID" or "FAIL ID: WHY", then "passed N of M";
the Rust test asserts there is no FAIL. A connection error is met by a
GOAWAY with the expected code or by the connection closing; a stream error
by RST_STREAM with the expected code, or by a connection error with it.
HPACK blocks are written by the `hpack` package (it comes with `h2`) or
byte by byte where a case needs a malformed one.
"""

import socket
import ssl
import struct
import sys

import hpack
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 5, 6, 7, 8, 9
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)
WAIT = 10.0

TLS = False
LENIENT = False


class Failed(Exception):
    pass


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def settings(*pairs):
    return b"".join(struct.pack(">HI", k, v) for k, v in pairs)


class Conn:
    """One client connection, its HPACK encoder and the server's SETTINGS."""

    def __init__(self, port, preface=True, client_settings=b""):
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        if TLS:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            if sock.selected_alpn_protocol() != "h2":
                raise Failed("ALPN chose %r, not h2" % sock.selected_alpn_protocol())
        self.sock, self.buf, self.port = sock, b"", port
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.server = {}
        if preface:
            self.handshake(client_settings)

    def send(self, *frames):
        try:
            self.sock.sendall(b"".join(frames))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
            pass

    def next(self):
        """The next frame as (kind, flags, stream, payload), "closed" or
        "timeout"."""
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    kind, flags = self.buf[3], self.buf[4]
                    stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                    payload = self.buf[9 : 9 + length]
                    self.buf = self.buf[9 + length :]
                    return kind, flags, stream, payload
            try:
                got = self.sock.recv(65536)
            except socket.timeout:
                return "timeout"
            except (ConnectionResetError, ssl.SSLError, OSError):
                return "closed"
            if not got:
                return "closed"
            self.buf += got

    def handshake(self, client_settings):
        self.send(PREFACE + frame(SETTINGS, 0, 0, client_settings))
        seen_settings = seen_ack = False
        while not (seen_settings and seen_ack):
            got = self.next()
            if isinstance(got, str):
                raise Failed("handshake: %s" % got)
            kind, flags, _, payload = got
            if kind == SETTINGS and flags & ACK:
                seen_ack = True
            elif kind == SETTINGS:
                if seen_settings:
                    raise Failed("handshake: a second SETTINGS before the ACK")
                seen_settings = True
                for at in range(0, len(payload), 6):
                    key, value = struct.unpack(">HI", payload[at : at + 6])
                    self.server[key] = value
                self.send(frame(SETTINGS, ACK, 0))

    def max_frame(self):
        return self.server.get(MAX_FRAME_SIZE, 16384)

    def fields(self, method="GET", path="/", extra=()):
        return [
            (":method", method),
            (":scheme", "https" if TLS else "http"),
            (":path", path),
            (":authority", "127.0.0.1:%d" % self.port),
        ] + list(extra)

    def block(self, method="GET", path="/", extra=()):
        return self.encoder.encode(self.fields(method, path, extra))

    def get(self, stream, end_stream=True, **kw):
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, stream, self.block(**kw))

    def post(self, stream, **kw):
        return frame(HEADERS, END_HEADERS, stream, self.block(method="POST", **kw))


# -- verdicts ---------------------------------------------------------------


def error_code(payload):
    return int.from_bytes(payload[:4], "big")


def wrong(c, code, codes):
    """A GOAWAY with another code than the RFC's: a failure, unless the
    run is --lenient (as h2spec without --strict) and the connection closes."""
    if not LENIENT:
        raise Failed("GOAWAY %d, expected %s" % (code, list(codes)))
    while True:
        got = c.next()
        if got == "closed":
            return
        if got == "timeout":
            raise Failed("GOAWAY %d, then the connection stayed open" % code)


def connection_error(c, *codes):
    while True:
        got = c.next()
        if got == "closed":
            return
        if got == "timeout":
            raise Failed("no GOAWAY %s and the connection stayed open" % list(codes))
        kind, _, _, payload = got
        if kind == GOAWAY:
            code = error_code(payload[4:8])
            if code not in codes:
                wrong(c, code, codes)
            return


def stream_error(c, stream, *codes):
    while True:
        got = c.next()
        if got == "closed":
            return
        if got == "timeout":
            raise Failed("no RST_STREAM or GOAWAY %s on stream %d" % (list(codes), stream))
        kind, _, sid, payload = got
        if kind == GOAWAY:
            code = error_code(payload[4:8])
            if code not in codes:
                wrong(c, code, codes)
            return
        if kind == RST_STREAM and sid == stream:
            code = error_code(payload)
            if code not in codes:
                raise Failed("RST_STREAM %d, expected %s" % (code, list(codes)))
            return
        if kind == HEADERS and sid == stream:
            raise Failed("stream %d was answered, expected an error %s" % (stream, list(codes)))


def alive(c, what="ping"):
    """The connection still works: a PING is answered with its payload."""
    c.send(frame(PING, 0, 0, b"conform!"))
    ping_ack(c, b"conform!", what)


def ping_ack(c, mark, what="ping"):
    """The next PING ACK carries `mark`."""
    while True:
        got = c.next()
        if isinstance(got, str):
            raise Failed("%s: the PING after it got %s" % (what, got))
        kind, flags, _, payload = got
        if kind == GOAWAY:
            raise Failed("%s: GOAWAY %d" % (what, error_code(payload[4:8])))
        if kind == PING and flags & ACK:
            if payload != mark:
                raise Failed("%s: a PING ACK with payload %r" % (what, payload))
            return


def response(c, stream, head=False):
    """Stream `stream` is answered; its status. With `head`, the answer
    must carry no body."""
    status, body = None, 0
    while True:
        got = c.next()
        if isinstance(got, str):
            raise Failed("no complete answer on stream %d: %s" % (stream, got))
        kind, flags, sid, payload = got
        if kind == GOAWAY:
            raise Failed("GOAWAY %d instead of an answer" % error_code(payload[4:8]))
        if kind == RST_STREAM and sid == stream:
            raise Failed("RST_STREAM %d instead of an answer" % error_code(payload))
        if kind == HEADERS and sid == stream:
            if status is None:
                status = dict(c.decoder.decode(payload)).get(":status")
                if status is None:
                    raise Failed("a response without :status")
                if not flags & END_HEADERS:
                    raise Failed("the test cannot follow CONTINUATION in a response")
        if kind == DATA and sid == stream:
            body += len(payload)
            if body:
                c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload))))
        if sid == stream and kind in (HEADERS, DATA) and flags & END_STREAM:
            if head and body:
                raise Failed("a HEAD answer with %d body bytes" % body)
            return status


def data_of(c, stream, length):
    """The first DATA frame on `stream` carries exactly `length` bytes."""
    while True:
        got = c.next()
        if isinstance(got, str):
            raise Failed("no DATA on stream %d: %s" % (stream, got))
        kind, _, sid, payload = got
        if kind == GOAWAY:
            raise Failed("GOAWAY %d" % error_code(payload[4:8]))
        if kind == RST_STREAM and sid == stream:
            raise Failed("RST_STREAM %d" % error_code(payload))
        if kind == DATA and sid == stream:
            if len(payload) != length:
                raise Failed("DATA of %d bytes, expected %d" % (len(payload), length))
            return


def no_data(c, stream):
    """Nothing flows on `stream` while its window is not open (a PING is
    answered first)."""
    mark = b"nodata!!"
    c.send(frame(PING, 0, 0, mark))
    while True:
        got = c.next()
        if isinstance(got, str):
            raise Failed("waiting for the PING: %s" % got)
        kind, flags, sid, payload = got
        if kind == DATA and sid == stream and payload:
            raise Failed("DATA of %d bytes with no window" % len(payload))
        if kind == PING and flags & ACK and payload == mark:
            return


# -- HPACK by hand ----------------------------------------------------------


def integer(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def raw_string(text):
    return integer(len(text), 7) + text


def huffman_string(encoded):
    return integer(len(encoded), 7, 0x80) + encoded


def literal(name, value_bytes):
    """A literal field without indexing, new name, `value_bytes` already
    encoded (length prefix included)."""
    return b"\x00" + raw_string(name) + value_bytes


def huffman_bits(text):
    """`text`'s Huffman code as a string of bits (no padding)."""
    return "".join(format(REQUEST_CODES[b], "0%db" % REQUEST_CODES_LENGTH[b]) for b in text)


def bits_to_bytes(bits):
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


# -- the cases --------------------------------------------------------------

CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn

    return register


@case("3.5/1 preface answered with SETTINGS")
def _(port):
    c = Conn(port, preface=False)
    c.send(PREFACE + frame(SETTINGS, 0, 0))
    got = c.next()
    if isinstance(got, str) or got[0] != SETTINGS or got[1] & ACK:
        raise Failed("the first frame is %r, not SETTINGS" % (got,))


@case("3.5/2 invalid preface")
def _(port):
    c = Conn(port, preface=False)
    c.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
    if TLS:
        connection_error(c, PROTOCOL_ERROR)
    else:
        # A plain listener also speaks HTTP/1.1: its 400, then the close.
        while True:
            got = c.next()
            if got == "closed":
                return
            if got == "timeout":
                raise Failed("the connection stayed open")


@case("4.1/1 unknown frame type ignored")
def _(port):
    c = Conn(port)
    c.send(frame(0x16, 0, 0, b"\0" * 8))
    alive(c)


@case("4.1/2 undefined flags ignored")
def _(port):
    c = Conn(port)
    c.send(frame(PING, 0x16, 0, b"flags!!!"))
    ping_ack(c, b"flags!!!")


@case("4.1/3 reserved bit ignored")
def _(port):
    c = Conn(port)
    c.send(frame(PING, 0, 0x80000000, b"reserved"))
    ping_ack(c, b"reserved")


@case("4.2/1 DATA of 16384 bytes accepted")
def _(port):
    c = Conn(port)
    c.send(c.post(1, extra=[("content-length", "16384")]), frame(DATA, END_STREAM, 1, b"x" * 16384))
    response(c, 1)


@case("4.2/2 DATA over SETTINGS_MAX_FRAME_SIZE")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(DATA, END_STREAM, 1, b"x" * (c.max_frame() + 1)))
    stream_error(c, 1, FRAME_SIZE_ERROR)


@case("4.2/3 HEADERS over SETTINGS_MAX_FRAME_SIZE")
def _(port):
    c = Conn(port)
    block = c.block() + literal(b"x-big", raw_string(b"a" * c.max_frame()))
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    connection_error(c, FRAME_SIZE_ERROR)


@case("4.3/1 invalid header block")
def _(port):
    c = Conn(port)
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, c.block() + b"\x00\x00\x00\x00\x00"))
    connection_error(c, COMPRESSION_ERROR)


@case("4.3/2 PRIORITY inside a header block")
def _(port):
    c = Conn(port)
    c.send(frame(HEADERS, END_STREAM, 1, c.block()), frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 15)))
    connection_error(c, PROTOCOL_ERROR)


@case("4.3/3 HEADERS on another stream inside a header block")
def _(port):
    c = Conn(port)
    c.send(frame(HEADERS, END_STREAM, 1, c.block()), c.get(3))
    connection_error(c, PROTOCOL_ERROR)


@case("5.1/1 idle: DATA")
def _(port):
    c = Conn(port)
    c.send(frame(DATA, END_STREAM, 1, b"test"))
    connection_error(c, PROTOCOL_ERROR)


@case("5.1/2 idle: RST_STREAM")
def _(port):
    c = Conn(port)
    c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)))
    connection_error(c, PROTOCOL_ERROR)


@case("5.1/3 idle: WINDOW_UPDATE")
def _(port):
    c = Conn(port)
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 100)))
    connection_error(c, PROTOCOL_ERROR)


@case("5.1/4 idle: CONTINUATION")
def _(port):
    c = Conn(port)
    c.send(frame(CONTINUATION, END_HEADERS, 1, c.block()))
    connection_error(c, PROTOCOL_ERROR)


@case("5.1/5 half-closed (remote): DATA")
def _(port):
    c = Conn(port)
    c.send(c.get(1), frame(DATA, END_STREAM, 1, b"test"))
    stream_error(c, 1, STREAM_CLOSED)


@case("5.1/6 half-closed (remote): HEADERS")
def _(port):
    c = Conn(port)
    c.send(c.get(1), c.get(1))
    stream_error(c, 1, STREAM_CLOSED)


@case("5.1/7 half-closed (remote): CONTINUATION")
def _(port):
    c = Conn(port)
    c.send(c.get(1), frame(CONTINUATION, END_HEADERS, 1, c.block()))
    stream_error(c, 1, STREAM_CLOSED, PROTOCOL_ERROR)


@case("5.1/8 closed after RST_STREAM: DATA")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)), frame(DATA, 0, 1, b"test"))
    stream_error(c, 1, STREAM_CLOSED)


@case("5.1/9 closed after RST_STREAM: HEADERS")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)), c.get(1))
    stream_error(c, 1, STREAM_CLOSED)


@case("5.1/10 closed after RST_STREAM: CONTINUATION")
def _(port):
    c = Conn(port)
    c.send(
        c.post(1),
        frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)),
        frame(CONTINUATION, END_HEADERS, 1, c.block()),
    )
    stream_error(c, 1, STREAM_CLOSED, PROTOCOL_ERROR)


def closed_stream(c):
    c.send(c.get(1))
    response(c, 1)


@case("5.1/11 closed: DATA")
def _(port):
    c = Conn(port)
    closed_stream(c)
    c.send(frame(DATA, END_STREAM, 1, b"test"))
    stream_error(c, 1, STREAM_CLOSED)


@case("5.1/12 closed: HEADERS")
def _(port):
    c = Conn(port)
    closed_stream(c)
    c.send(c.get(1))
    stream_error(c, 1, STREAM_CLOSED)


@case("5.1/13 closed: CONTINUATION")
def _(port):
    c = Conn(port)
    closed_stream(c)
    c.send(frame(CONTINUATION, END_HEADERS, 1, c.block()))
    stream_error(c, 1, STREAM_CLOSED, PROTOCOL_ERROR)


@case("5.1.1/1 even stream id")
def _(port):
    c = Conn(port)
    c.send(c.get(2))
    connection_error(c, PROTOCOL_ERROR)


@case("5.1.1/2 stream id lower than an earlier one")
def _(port):
    c = Conn(port)
    c.send(c.get(5))
    response(c, 5)
    c.send(c.get(3))
    connection_error(c, PROTOCOL_ERROR)


@case("5.1.2/1 over SETTINGS_MAX_CONCURRENT_STREAMS")
def _(port):
    c = Conn(port)
    limit = c.server.get(MAX_CONCURRENT_STREAMS)
    if limit is None or limit > 1000:
        raise Failed("the server sets no usable SETTINGS_MAX_CONCURRENT_STREAMS (%r)" % limit)
    c.send(*[c.post(2 * i + 1) for i in range(limit + 1)])
    while True:
        got = c.next()
        if got == "closed":
            return
        if got == "timeout":
            raise Failed("stream %d past the limit was not refused" % (2 * limit + 1))
        kind, _, _, payload = got
        if kind == GOAWAY:
            if error_code(payload[4:8]) not in (PROTOCOL_ERROR, REFUSED_STREAM):
                raise Failed("GOAWAY %d" % error_code(payload[4:8]))
            return
        if kind == RST_STREAM:
            if error_code(payload) not in (PROTOCOL_ERROR, REFUSED_STREAM):
                raise Failed("RST_STREAM %d" % error_code(payload))
            return


@case("5.3.1/1 HEADERS depending on itself")
def _(port):
    c = Conn(port)
    priority = struct.pack(">IB", 1, 15)
    c.send(frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1, priority + c.block()))
    stream_error(c, 1, PROTOCOL_ERROR)


@case("5.3.1/2 PRIORITY depending on itself")
def _(port):
    c = Conn(port)
    c.send(frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 15)))
    stream_error(c, 1, PROTOCOL_ERROR)


@case("5.4.1/1 a connection error ends with GOAWAY naming the last stream")
def _(port):
    c = Conn(port)
    c.send(c.get(1))
    response(c, 1)
    c.send(frame(PING, 0, 0, b"\0" * 6))
    while True:
        got = c.next()
        if isinstance(got, str):
            raise Failed("no GOAWAY: %s" % got)
        kind, _, _, payload = got
        if kind == GOAWAY:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if error_code(payload[4:8]) != FRAME_SIZE_ERROR or last != 1:
                raise Failed("GOAWAY %d last %d" % (error_code(payload[4:8]), last))
            return


@case("5.5/1 unknown extension frame ignored")
def _(port):
    c = Conn(port)
    c.send(frame(0xFF, 0, 1, b"extension"))
    alive(c)


@case("5.5/2 unknown frame inside a header block")
def _(port):
    c = Conn(port)
    c.send(frame(HEADERS, END_STREAM, 1, c.block()), frame(0xFF, 0, 1, b"extension"))
    connection_error(c, PROTOCOL_ERROR)


@case("6.1/1 DATA on stream 0")
def _(port):
    c = Conn(port)
    c.send(frame(DATA, END_STREAM, 0, b"test"))
    connection_error(c, PROTOCOL_ERROR)


@case("6.1/2 DATA on a half-closed (remote) stream")
def _(port):
    c = Conn(port)
    c.send(c.get(1), frame(DATA, END_STREAM, 1, b"test"))
    stream_error(c, 1, STREAM_CLOSED)


@case("6.1/3 DATA with a pad length past its end")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(DATA, END_STREAM | PADDED, 1, bytes([6]) + b"test"))
    connection_error(c, PROTOCOL_ERROR)


@case("6.2/1 HEADERS without END_HEADERS then PRIORITY")
def _(port):
    c = Conn(port)
    c.send(frame(HEADERS, END_STREAM, 1, c.block()), frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 15)))
    connection_error(c, PROTOCOL_ERROR)


@case("6.2/2 HEADERS on another stream before END_HEADERS")
def _(port):
    c = Conn(port)
    c.send(frame(HEADERS, END_STREAM, 1, c.block()), frame(HEADERS, END_STREAM | END_HEADERS, 3, c.block()))
    connection_error(c, PROTOCOL_ERROR)


@case("6.2/3 HEADERS on stream 0")
def _(port):
    c = Conn(port)
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 0, c.block()))
    connection_error(c, PROTOCOL_ERROR)


@case("6.2/4 HEADERS with a pad length past its end")
def _(port):
    c = Conn(port)
    block = c.block()
    c.send(frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, bytes([len(block) + 1]) + block))
    connection_error(c, PROTOCOL_ERROR)


@case("6.3/1 PRIORITY on stream 0")
def _(port):
    c = Conn(port)
    c.send(frame(PRIORITY, 0, 0, struct.pack(">IB", 0, 15)))
    connection_error(c, PROTOCOL_ERROR)


@case("6.3/2 PRIORITY of 4 bytes")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(PRIORITY, 0, 1, struct.pack(">I", 0)))
    stream_error(c, 1, FRAME_SIZE_ERROR)


@case("6.4/1 RST_STREAM on stream 0")
def _(port):
    c = Conn(port)
    c.send(frame(RST_STREAM, 0, 0, struct.pack(">I", CANCEL)))
    connection_error(c, PROTOCOL_ERROR)


@case("6.4/2 RST_STREAM on an idle stream")
def _(port):
    c = Conn(port)
    c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)))
    connection_error(c, PROTOCOL_ERROR)


@case("6.4/3 RST_STREAM of 3 bytes")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(RST_STREAM, 0, 1, b"\0\0\x08"))
    connection_error(c, FRAME_SIZE_ERROR)


@case("6.5/1 SETTINGS ACK with a payload")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, ACK, 0, settings((INITIAL_WINDOW_SIZE, 100))))
    connection_error(c, FRAME_SIZE_ERROR)


@case("6.5/2 SETTINGS on a stream")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, 0, 1, settings((INITIAL_WINDOW_SIZE, 100))))
    connection_error(c, PROTOCOL_ERROR)


@case("6.5/3 SETTINGS not a multiple of 6 bytes")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 100))[:5]))
    connection_error(c, FRAME_SIZE_ERROR)


@case("6.5.2/1 SETTINGS_ENABLE_PUSH of 2")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, 0, 0, settings((ENABLE_PUSH, 2))))
    connection_error(c, PROTOCOL_ERROR)


@case("6.5.2/2 SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 1 << 31))))
    connection_error(c, FLOW_CONTROL_ERROR)


@case("6.5.2/3 SETTINGS_MAX_FRAME_SIZE under 16384")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, 0, 0, settings((MAX_FRAME_SIZE, 16383))))
    connection_error(c, PROTOCOL_ERROR)


@case("6.5.2/4 SETTINGS_MAX_FRAME_SIZE over 2^24-1")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, 0, 0, settings((MAX_FRAME_SIZE, 1 << 24))))
    connection_error(c, PROTOCOL_ERROR)


@case("6.5.2/5 unknown setting ignored")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, 0, 0, settings((0xFF, 1))))
    alive(c)


@case("6.5.3/1 settings applied in order")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1))), c.get(1))
    data_of(c, 1, 1)


@case("6.5.3/2 SETTINGS acknowledged")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, 0, 0, settings((MAX_CONCURRENT_STREAMS, 100))))
    while True:
        got = c.next()
        if isinstance(got, str):
            raise Failed("no SETTINGS ACK: %s" % got)
        if got[0] == SETTINGS and got[1] & ACK:
            if got[3]:
                raise Failed("a SETTINGS ACK with a payload")
            return


@case("6.7/1 PING answered with its payload")
def _(port):
    alive(Conn(port))


@case("6.7/2 a PING ACK is not answered")
def _(port):
    c = Conn(port)
    c.send(frame(PING, ACK, 0, b"invalid!"))
    alive(c, "after a PING ACK")


@case("6.7/3 PING on a stream")
def _(port):
    c = Conn(port)
    c.send(frame(PING, 0, 1, b"\0" * 8))
    connection_error(c, PROTOCOL_ERROR)


@case("6.7/4 PING of 6 bytes")
def _(port):
    c = Conn(port)
    c.send(frame(PING, 0, 0, b"\0" * 6))
    connection_error(c, FRAME_SIZE_ERROR)


@case("6.8/1 GOAWAY on a stream")
def _(port):
    c = Conn(port)
    c.send(frame(GOAWAY, 0, 1, struct.pack(">II", 0, NO_ERROR)))
    connection_error(c, PROTOCOL_ERROR)


@case("6.9/1 WINDOW_UPDATE of 0 on the connection")
def _(port):
    c = Conn(port)
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)))
    connection_error(c, PROTOCOL_ERROR)


@case("6.9/2 WINDOW_UPDATE of 0 on a stream")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0)))
    stream_error(c, 1, PROTOCOL_ERROR)


@case("6.9/3 WINDOW_UPDATE of 3 bytes")
def _(port):
    c = Conn(port)
    c.send(frame(WINDOW_UPDATE, 0, 0, b"\0\0\x01"))
    connection_error(c, FRAME_SIZE_ERROR)


@case("6.9.1/1 a window of 1 lets one byte through")
def _(port):
    c = Conn(port, client_settings=settings((INITIAL_WINDOW_SIZE, 1)))
    c.send(c.get(1))
    data_of(c, 1, 1)


@case("6.9.1/2 the connection window past 2^31-1")
def _(port):
    c = Conn(port)
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)) * 2)
    connection_error(c, FLOW_CONTROL_ERROR)


@case("6.9.1/3 a stream window past 2^31-1")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7FFFFFFF)) * 2)
    stream_error(c, 1, FLOW_CONTROL_ERROR)


@case("6.9.2/1 a window opened by SETTINGS after HEADERS")
def _(port):
    c = Conn(port, client_settings=settings((INITIAL_WINDOW_SIZE, 0)))
    c.send(c.get(1))
    no_data(c, 1)
    c.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 1))))
    data_of(c, 1, 1)


@case("6.9.2/2 a window made negative by SETTINGS")
def _(port):
    c = Conn(port, client_settings=settings((INITIAL_WINDOW_SIZE, 3)))
    c.send(c.get(1))
    data_of(c, 1, 3)
    # The window goes from 0 to -3, and back to 1 with 4 more.
    c.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 0))))
    no_data(c, 1)
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 4)))
    data_of(c, 1, 1)


@case("6.9.2/3 SETTINGS_INITIAL_WINDOW_SIZE of 2^31")
def _(port):
    c = Conn(port)
    c.send(frame(SETTINGS, 0, 0, settings((INITIAL_WINDOW_SIZE, 1 << 31))))
    connection_error(c, FLOW_CONTROL_ERROR)


def split_block(c):
    block = c.block(extra=[("x-dummy%d" % i, "v" * 20) for i in range(5)])
    third = len(block) // 3
    return block[:third], block[third : 2 * third], block[2 * third :]


@case("6.10/1 a header block over CONTINUATION frames")
def _(port):
    c = Conn(port)
    a, b, d = split_block(c)
    c.send(frame(HEADERS, END_STREAM, 1, a), frame(CONTINUATION, 0, 1, b), frame(CONTINUATION, END_HEADERS, 1, d))
    response(c, 1)


@case("6.10/2 CONTINUATION followed by another frame")
def _(port):
    c = Conn(port)
    a, b, _ = split_block(c)
    c.send(frame(HEADERS, END_STREAM, 1, a), frame(CONTINUATION, 0, 1, b), frame(DATA, 0, 1, b"test"))
    connection_error(c, PROTOCOL_ERROR)


@case("6.10/3 CONTINUATION on stream 0")
def _(port):
    c = Conn(port)
    a, b, _ = split_block(c)
    c.send(frame(HEADERS, END_STREAM, 1, a), frame(CONTINUATION, END_HEADERS, 0, b))
    connection_error(c, PROTOCOL_ERROR)


@case("6.10/4 CONTINUATION after END_HEADERS")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(CONTINUATION, END_HEADERS, 1, c.encoder.encode([("x-dummy", "v")])))
    connection_error(c, PROTOCOL_ERROR)


@case("6.10/5 CONTINUATION after a CONTINUATION with END_HEADERS")
def _(port):
    c = Conn(port)
    a, b, d = split_block(c)
    c.send(
        frame(HEADERS, 0, 1, a),
        frame(CONTINUATION, END_HEADERS, 1, b + d),
        frame(CONTINUATION, END_HEADERS, 1, c.encoder.encode([("x-dummy", "v")])),
    )
    connection_error(c, PROTOCOL_ERROR)


@case("6.10/6 CONTINUATION after DATA")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(DATA, 0, 1, b"test"), frame(CONTINUATION, END_HEADERS, 1, c.encoder.encode([("x", "v")])))
    connection_error(c, PROTOCOL_ERROR)


@case("7/1 GOAWAY with an unknown error code")
def _(port):
    c = Conn(port)
    c.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0xFF)), frame(PING, 0, 0, b"conform!"))
    # The PING answered, or the connection ended as after any GOAWAY from
    # a client (no special behaviour either way).
    while True:
        got = c.next()
        if got == "closed":
            return
        if got == "timeout":
            raise Failed("neither the PING answered nor the connection closed")
        kind, flags, _, payload = got
        if kind == PING and flags & ACK:
            return
        if kind == GOAWAY and error_code(payload[4:8]) != NO_ERROR:
            raise Failed("GOAWAY %d" % error_code(payload[4:8]))


@case("7/2 RST_STREAM with an unknown error code")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(RST_STREAM, 0, 1, struct.pack(">I", 0xFF)))
    alive(c)


@case("5.1/14 half-closed (remote): PRIORITY, WINDOW_UPDATE and RST_STREAM allowed")
def _(port):
    c = Conn(port, client_settings=settings((INITIAL_WINDOW_SIZE, 1)))
    c.send(
        c.get(1),
        frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 15)),
        frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1)),
        frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)),
    )
    alive(c)


@case("5.1/15 closed: PRIORITY allowed")
def _(port):
    c = Conn(port)
    closed_stream(c)
    c.send(frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 15)))
    alive(c)


@case("8.1/1 a second HEADERS without END_STREAM")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(DATA, 0, 1, b"test"), frame(HEADERS, END_HEADERS, 1, c.encoder.encode([("x-trailer", "v")])))
    stream_error(c, 1, PROTOCOL_ERROR)


def malformed(fields, trailers=None):
    def run(port):
        c = Conn(port)
        if trailers is None:
            c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, c.encoder.encode(fields(c))))
        else:
            c.send(
                c.post(1),
                frame(DATA, 0, 1, b"test"),
                frame(HEADERS, END_STREAM | END_HEADERS, 1, c.encoder.encode(trailers)),
            )
        stream_error(c, 1, PROTOCOL_ERROR)

    return run


def without(name):
    return lambda c: [f for f in c.fields() if f[0] != name]


def twice(name):
    return lambda c: c.fields() + [f for f in c.fields() if f[0] == name]


CASES["8.1.2/1 an uppercase field name"] = malformed(lambda c: c.fields(extra=[("X-Test", "ok")]))
CASES["8.1.2.1/1 an unknown pseudo-header"] = malformed(lambda c: c.fields(extra=[(":test", "ok")]))
CASES["8.1.2.1/2 a response pseudo-header in a request"] = malformed(lambda c: c.fields(extra=[(":status", "200")]))
CASES["8.1.2.1/3 a pseudo-header in trailers"] = malformed(None, trailers=[(":method", "POST")])
CASES["8.1.2.1/4 a pseudo-header after a regular field"] = malformed(
    lambda c: [("x-first", "1")] + c.fields()
)
CASES["8.1.2.2/1 a connection-specific field"] = malformed(lambda c: c.fields(extra=[("connection", "keep-alive")]))
CASES["8.1.2.2/2 TE other than trailers"] = malformed(lambda c: c.fields(extra=[("te", "trailers, deflate")]))
CASES["8.1.2.3/1 an empty :path"] = malformed(lambda c: [(k, "" if k == ":path" else v) for k, v in c.fields()])
CASES["8.1.2.3/2 no :method"] = malformed(without(":method"))
CASES["8.1.2.3/3 no :scheme"] = malformed(without(":scheme"))
CASES["8.1.2.3/4 no :path"] = malformed(without(":path"))
CASES["8.1.2.3/5 two :method"] = malformed(twice(":method"))
CASES["8.1.2.3/6 two :scheme"] = malformed(twice(":scheme"))
CASES["8.1.2.3/7 two :path"] = malformed(twice(":path"))


@case("8.1.2.6/1 content-length unlike the one DATA frame")
def _(port):
    c = Conn(port)
    c.send(c.post(1, extra=[("content-length", "1")]), frame(DATA, END_STREAM, 1, b"test"))
    stream_error(c, 1, PROTOCOL_ERROR)


@case("8.1.2.6/2 content-length unlike the sum of DATA frames")
def _(port):
    c = Conn(port)
    c.send(
        c.post(1, extra=[("content-length", "5")]),
        frame(DATA, 0, 1, b"test"),
        frame(DATA, END_STREAM, 1, b"test"),
    )
    stream_error(c, 1, PROTOCOL_ERROR)


@case("8.2/1 PUSH_PROMISE from a client")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + c.block()))
    connection_error(c, PROTOCOL_ERROR)


def hpack_case(tail):
    """A request block (raw, no dynamic table) with `tail` appended:
    a COMPRESSION_ERROR."""

    def run(port):
        c = Conn(port)
        head = b"\x82\x86\x84" + b"\x41" + raw_string(b"127.0.0.1")
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, head + tail))
        connection_error(c, COMPRESSION_ERROR)

    return run


CASES["hpack 2.3.3/1 an index past both tables"] = hpack_case(integer(70, 7, 0x80))
CASES["hpack 2.3.3/2 a literal naming an index past both tables"] = hpack_case(
    integer(70, 4, 0x00) + raw_string(b"v")
)
CASES["hpack 4.2/1 a table size update at the end of a block"] = hpack_case(integer(0, 5, 0x20))
CASES["hpack 5.2/1 Huffman padding longer than 7 bits"] = hpack_case(
    literal(b"x-test", huffman_string(bits_to_bytes(huffman_bits(b"a").ljust(8, "1") + "11111111")))
)
CASES["hpack 5.2/2 Huffman padding of zeros"] = hpack_case(
    literal(b"x-test", huffman_string(bits_to_bytes(huffman_bits(b"a").ljust(8, "0"))))
)
CASES["hpack 5.2/3 the EOS symbol in a Huffman string"] = hpack_case(
    literal(b"x-test", huffman_string(bits_to_bytes((huffman_bits(b"a") + "1" * 30).ljust(40, "1"))))
)
CASES["hpack 6.1/1 index 0"] = hpack_case(b"\x80")


@case("hpack 6.3/1 a table size update over SETTINGS_HEADER_TABLE_SIZE")
def _(port):
    c = Conn(port)
    limit = c.server.get(HEADER_TABLE_SIZE, 4096)
    block = integer(limit + 1, 5, 0x20) + b"\x82\x86\x84" + b"\x41" + raw_string(b"127.0.0.1")
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
    connection_error(c, COMPRESSION_ERROR)


# -- what must work ---------------------------------------------------------


def served(build, head=False):
    def run(port):
        c = Conn(port)
        build(c)
        response(c, 1, head=head)
        alive(c, "after the answer")

    return run


CASES["generic GET"] = served(lambda c: c.send(c.get(1)))
CASES["generic HEAD"] = served(lambda c: c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, c.block("HEAD"))), True)
CASES["generic POST with a body"] = served(lambda c: c.send(c.post(1), frame(DATA, END_STREAM, 1, b"test")))
CASES["generic POST with trailers"] = served(
    lambda c: c.send(
        c.post(1),
        frame(DATA, 0, 1, b"test"),
        frame(HEADERS, END_STREAM | END_HEADERS, 1, c.encoder.encode([("x-trailer", "done")])),
    )
)
CASES["generic DATA over several frames"] = served(
    lambda c: c.send(c.post(1), *[frame(DATA, 0, 1, b"part") for _ in range(4)], frame(DATA, END_STREAM, 1, b""))
)
CASES["generic padded DATA"] = served(
    lambda c: c.send(c.post(1), frame(DATA, END_STREAM | PADDED, 1, bytes([8]) + b"test" + b"\0" * 8))
)
CASES["generic padded HEADERS"] = served(
    lambda c: c.send(frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, bytes([8]) + c.block() + b"\0" * 8))
)
CASES["generic HEADERS with priority"] = served(
    lambda c: c.send(
        frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1, struct.pack(">IB", 0x80000000, 255) + c.block())
    )
)
CASES["generic PRIORITY on an idle stream"] = served(
    lambda c: c.send(frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 15)), c.get(1))
)
CASES["generic PRIORITY on an open stream"] = served(
    lambda c: c.send(c.post(1), frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 15)), frame(DATA, END_STREAM, 1, b""))
)
CASES["generic WINDOW_UPDATE on the connection and a stream"] = served(
    lambda c: c.send(
        frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)),
        c.get(1),
        frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1)),
    )
)
CASES["generic every known SETTINGS"] = served(
    lambda c: c.send(
        frame(
            SETTINGS,
            0,
            0,
            settings(
                (HEADER_TABLE_SIZE, 4096),
                (ENABLE_PUSH, 0),
                (MAX_CONCURRENT_STREAMS, 100),
                (INITIAL_WINDOW_SIZE, 65535),
                (MAX_FRAME_SIZE, 16384),
                (MAX_HEADER_LIST_SIZE, 65536),
            ),
        ),
        c.get(1),
    )
)
CASES["generic an empty CONTINUATION"] = served(
    lambda c: c.send(frame(HEADERS, END_STREAM, 1, c.block()), frame(CONTINUATION, END_HEADERS, 1, b""))
)


@case("generic RST_STREAM on an open stream, then another stream")
def _(port):
    c = Conn(port)
    c.send(c.post(1), frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)), c.get(3))
    response(c, 3)


@case("generic many streams at once")
def _(port):
    c = Conn(port)
    c.send(*[c.get(2 * i + 1) for i in range(10)])
    done = set()
    while len(done) < 10:
        got = c.next()
        if isinstance(got, str):
            raise Failed("%d of 10 streams answered: %s" % (len(done), got))
        kind, flags, sid, payload = got
        if kind in (GOAWAY, RST_STREAM):
            raise Failed("frame %d code %d" % (kind, error_code(payload[-4:])))
        if kind in (HEADERS, DATA) and flags & END_STREAM:
            done.add(sid)
        if kind == DATA and payload:
            c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload))))


@case("generic GOAWAY from the client")
def _(port):
    c = Conn(port)
    c.send(c.get(1))
    response(c, 1)
    c.send(frame(GOAWAY, 0, 0, struct.pack(">II", 1, NO_ERROR)))
    while True:
        got = c.next()
        if got == "closed":
            return
        if got == "timeout":
            raise Failed("the connection stayed open after the client's GOAWAY")
        if got[0] == GOAWAY and error_code(got[3][4:8]) != NO_ERROR:
            raise Failed("GOAWAY %d" % error_code(got[3][4:8]))


def hpack_served(build):
    def run(port):
        c = Conn(port)
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, build(c)))
        response(c, 1)
        alive(c, "after the answer")

    return run


AUTHORITY_LITERAL = b"\x41" + raw_string(b"127.0.0.1")
CASES["hpack literal with incremental indexing, indexed name"] = hpack_served(
    lambda c: b"\x82\x86\x84" + AUTHORITY_LITERAL
)
CASES["hpack literal with incremental indexing, new name"] = hpack_served(
    lambda c: b"\x82\x86\x84" + AUTHORITY_LITERAL + b"\x40" + raw_string(b"x-test") + raw_string(b"ok")
)
CASES["hpack literal without indexing"] = hpack_served(
    lambda c: b"\x82\x86\x84" + b"\x01" + raw_string(b"127.0.0.1") + b"\x00" + raw_string(b"x-test") + raw_string(b"ok")
)
CASES["hpack literal never indexed"] = hpack_served(
    lambda c: b"\x82\x86\x84" + b"\x11" + raw_string(b"127.0.0.1") + b"\x10" + raw_string(b"x-test") + raw_string(b"ok")
)
CASES["hpack Huffman strings"] = hpack_served(
    lambda c: b"\x82\x86\x84" + b"\x41" + huffman_string(HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(b"127.0.0.1"))
)
CASES["hpack a table size update at the start"] = hpack_served(
    lambda c: integer(0, 5, 0x20) + integer(4096, 5, 0x20) + b"\x82\x86\x84" + AUTHORITY_LITERAL
)


@case("hpack the dynamic table across blocks")
def _(port):
    c = Conn(port)
    first = b"\x82\x86\x84" + AUTHORITY_LITERAL + b"\x40" + raw_string(b"x-test") + raw_string(b"ok")
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, first))
    response(c, 1)
    # 62 is x-test (newest), 63 :authority.
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 3, b"\x82\x86\x84\xbf\xbe"))
    response(c, 3)


@case("hpack 200 random blocks keep both tables in step")
def _(port):
    import random

    rng = random.Random(7541)
    c = Conn(port)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_"
    values = [chr(b) for b in range(0x20, 0x7F)]
    stream = 1
    for i in range(200):
        if i % 50 == 25:
            # The encoder shrinks or grows its table: a size update.
            c.encoder.header_table_size = rng.choice([0, 256, 1024, 4096])
        extra = []
        for _ in range(rng.randint(0, 6)):
            name = "x-" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
            value = "".join(rng.choice(values) for _ in range(rng.randint(0, 300))).strip()
            if rng.random() < 0.2:
                extra.append(hpack.NeverIndexedHeaderTuple(name, value))
            else:
                extra.append((name, value))
        block = c.encoder.encode(c.fields(path="/r%d" % rng.randint(0, 30), extra=extra), huffman=rng.random() < 0.7)
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, stream, block))
        response(c, stream)
        stream += 2


def main():
    global TLS, LENIENT
    args = sys.argv[1:]
    port = int(args.pop(0))
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        TLS = TLS or flag == "--tls"
        LENIENT = LENIENT or flag == "--lenient"
    names = [n for n in CASES if not args or any(n.startswith(a) for a in args)]
    passed = 0
    for name in names:
        try:
            CASES[name](port)
            print("ok", name, flush=True)
            passed += 1
        except Failed as why:
            print("FAIL %s: %s" % (name, why), flush=True)
    print("passed %d of %d" % (passed, len(names)), flush=True)


if __name__ == "__main__":
    main()
