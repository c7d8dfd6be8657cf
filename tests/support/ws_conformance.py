"""WebSocket conformance (RFC 6455), case by case after the Autobahn
test suite's groups: framing, pings and pongs, reserved bits, opcodes,
fragmentation, UTF-8, close handling and limits.

    python ws_conformance.py PORT PATH [--limit BYTES] [CASE ...]

PATH is an echo route (text and binary messages sent back as they came)
whose largest message is BYTES (64 KiB unless given). Each case opens its own connection, sends
exactly the frames it names (masked, as a client must) and reads what
comes back until it has a verdict or a bounded wait passes. Prints one
line per case, "ok ID" or "FAIL ID: WHY", then "passed N of M".
"""

import base64
import os
import socket
import struct
import sys

WAIT = 10.0
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
LIMIT = 64 << 10


class Failed(Exception):
    pass


def frame(opcode, payload=b"", fin=True, rsv=0):
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_frame(code=None, reason=b""):
    return frame(CLOSE, b"" if code is None else struct.pack(">H", code) + reason)


class Conn:
    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % (path, port, key)
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            got = self.sock.recv(4096)
            if not got:
                raise Failed("closed during the handshake")
            self.buf += got
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise Failed("handshake: %r" % head[:40])

    def send(self, *frames, chop=None):
        data = b"".join(frames)
        try:
            if chop:
                for at in range(0, len(data), chop):
                    self.sock.sendall(data[at : at + chop])
            else:
                self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def next(self):
        """The next frame as (fin, rsv, opcode, payload), "closed" or
        "timeout"."""
        while True:
            if len(self.buf) >= 2:
                b0, b1 = self.buf[0], self.buf[1]
                if b1 & 0x80:
                    raise Failed("a masked frame from the server")
                n, at = b1 & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, at = struct.unpack(">H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
                if (b1 & 0x7F) < 126 or at > 2:
                    if len(self.buf) >= at + n:
                        payload, self.buf = self.buf[at : at + n], self.buf[at + n :]
                        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, payload
            try:
                got = self.sock.recv(65536)
            except socket.timeout:
                return "timeout"
            except (ConnectionResetError, OSError):
                return "closed"
            if not got:
                return "closed"
            self.buf += got

    def message(self):
        """The next data message (opcode, payload), answering nothing;
        pongs are returned as they come, a close as ("close", code)."""
        parts, kind = b"", None
        while True:
            got = self.next()
            if isinstance(got, str):
                return got, None
            fin, rsv, opcode, payload = got
            if rsv:
                raise Failed("a frame with reserved bits from the server")
            if opcode == CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                return "close", code
            if opcode in (PING, PONG):
                return opcode, payload
            if opcode != CONT:
                kind = opcode
            parts += payload
            if fin:
                return kind, parts


def echoed(c, opcode, payload):
    got = c.message()
    if got != (opcode, payload):
        shown = got if len(repr(got)) < 120 else (got[0], "%d bytes" % len(got[1] or b""))
        raise Failed("expected the echo of %d bytes, got %s" % (len(payload), shown))


def closed_with(c, *codes):
    """The server closes with one of `codes` (its close frame, then the
    TCP close); data and pongs before it are skipped."""
    while True:
        got = c.message()
        if got[0] == "close":
            if got[1] not in codes:
                raise Failed("closed with %s, expected %s" % (got[1], list(codes)))
            c.send(close_frame(got[1]) if got[1] else close_frame())
            return
        if got[0] == "timeout":
            raise Failed("no close %s" % list(codes))
        if got[0] == "closed":
            raise Failed("the TCP connection closed without a close frame %s" % list(codes))


def ping_pong(c, payload=b"still here"):
    c.send(frame(PING, payload))
    got = c.message()
    if got != (PONG, payload):
        raise Failed("the ping after got %r" % (got,))


CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn

    return register


def echo_case(opcode, size, chop=None):
    def run(port, path):
        c = Conn(port, path)
        payload = (b"*" * size) if opcode == TEXT else bytes(i % 256 for i in range(size))
        c.send(frame(opcode, payload), chop=chop)
        echoed(c, opcode, payload)

    return run


for i, size in enumerate([0, 125, 126, 127, 128, 65535]):
    CASES["1.1.%d text of %d bytes" % (i + 1, size)] = echo_case(TEXT, size)
    CASES["1.2.%d binary of %d bytes" % (i + 1, size)] = echo_case(BINARY, size)
CASES["1.1.8 text of 65535 bytes in chops of 997"] = echo_case(TEXT, 65535, chop=997)
CASES["1.2.8 binary of 65535 bytes in chops of 997"] = echo_case(BINARY, 65535, chop=997)


def pong_case(payload, chop=None):
    def run(port, path):
        c = Conn(port, path)
        c.send(frame(PING, payload), chop=chop)
        got = c.message()
        if got != (PONG, payload):
            raise Failed("expected a pong of %d bytes, got %r" % (len(payload), got))

    return run


CASES["2.1 ping without payload"] = pong_case(b"")
CASES["2.2 ping with text"] = pong_case(b"Hello, world!")
CASES["2.3 ping with binary"] = pong_case(bytes([0, 255, 254, 253, 252, 251, 0, 255]))
CASES["2.4 ping of 125 bytes"] = pong_case(b"\xfe" * 125)
CASES["2.6 ping of 125 bytes in chops of 1"] = pong_case(b"\xfe" * 125, chop=1)


@case("2.5 ping of 126 bytes")
def _(port, path):
    c = Conn(port, path)
    c.send(frame(PING, b"\xfe" * 126))
    closed_with(c, 1002)


@case("2.7 an unsolicited pong is ignored")
def _(port, path):
    c = Conn(port, path)
    c.send(frame(PONG), frame(PONG, b"unsolicited"))
    ping_pong(c)


@case("2.10 ten pings, ten pongs in order")
def _(port, path):
    c = Conn(port, path)
    c.send(*[frame(PING, b"ping %d" % i) for i in range(10)], chop=1)
    for i in range(10):
        got = c.message()
        if got != (PONG, b"ping %d" % i):
            raise Failed("pong %d: %r" % (i, got))


def failing(frames, code=1002, first=None, chop=None):
    """`frames` break the protocol: the close is `code`; `first` is a
    message that must be echoed before it."""

    def run(port, path):
        c = Conn(port, path)
        c.send(*frames, chop=chop)
        if first is not None:
            echoed(c, TEXT, first)
        closed_with(c, code)

    return run


for i, rsv in enumerate([1, 2, 3, 4, 5, 6, 7]):
    CASES["3.%d text with reserved bits %d" % (i + 1, rsv)] = failing([frame(TEXT, b"Hello", rsv=rsv)])
CASES["3.2b a good message, then reserved bits, then a ping"] = failing(
    [frame(TEXT, b"Hello"), frame(TEXT, b"Hello", rsv=2), frame(PING)], first=b"Hello"
)
CASES["3.6 ping with reserved bits"] = failing([frame(PING, b"p", rsv=6)])
CASES["3.7 close with reserved bits"] = failing([frame(CLOSE, b"", rsv=7)])
for opcode in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]:
    CASES["4 reserved opcode %d" % opcode] = failing([frame(opcode, b"x")])
CASES["4.1.3 a good message, then a reserved opcode, then a ping"] = failing(
    [frame(TEXT, b"Hello"), frame(5), frame(PING)], first=b"Hello"
)

CASES["5.1 a fragmented ping"] = failing([frame(PING, b"frag", fin=False), frame(CONT, b"ment")])
CASES["5.2 a fragmented pong"] = failing([frame(PONG, b"frag", fin=False), frame(CONT, b"ment")])
CASES["5.9 a continuation with nothing to continue"] = failing([frame(CONT, b"x"), frame(TEXT, b"y")])
CASES["5.10 the same in chops of 1"] = failing([frame(CONT, b"x"), frame(TEXT, b"y")], chop=1)
CASES["5.12 an unfinished continuation with nothing to continue"] = failing([frame(CONT, b"x", fin=False)])
CASES["5.15 a new message inside a fragmented one"] = failing(
    [frame(TEXT, b"a", fin=False), frame(CONT, b"b"), frame(CONT, b"c", fin=False), frame(CONT, b"d")],
    first=b"ab",
)
CASES["5.18 fragments that each say text"] = failing([frame(TEXT, b"a", fin=False), frame(TEXT, b"b")])


@case("5.3 a message in two fragments")
def _(port, path):
    c = Conn(port, path)
    c.send(frame(TEXT, b"frag", fin=False), frame(CONT, b"ment"), chop=1)
    echoed(c, TEXT, b"fragment")


@case("5.6 a ping between fragments")
def _(port, path):
    c = Conn(port, path)
    c.send(frame(TEXT, b"frag", fin=False), frame(PING, b"mid"), frame(CONT, b"ment"))
    got = c.message()
    if got != (PONG, b"mid"):
        raise Failed("expected the pong first, got %r" % (got,))
    echoed(c, TEXT, b"fragment")


@case("5.19 pings between many fragments")
def _(port, path):
    c = Conn(port, path)
    frames = []
    for i in range(10):
        frames.append(frame(TEXT if i == 0 else CONT, b"%d" % i, fin=i == 9))
        if i % 3 == 1:
            frames.append(frame(PING, b"p%d" % i))
    c.send(*frames)
    for i in (1, 4, 7):
        got = c.message()
        if got != (PONG, b"p%d" % i):
            raise Failed("pong %d: %r" % (i, got))
    echoed(c, TEXT, b"0123456789")


VALID_UTF8 = [
    b"",
    "Hello-µ@ßöäüàá-UTF-8!!".encode(),
    "κόσμε".encode(),
    b"\x00",
    b"\x7f",
    b"\xc2\x80",
    b"\xdf\xbf",
    b"\xe0\xa0\x80",
    b"\xef\xbf\xbf",
    b"\xf0\x90\x80\x80",
    b"\xf4\x8f\xbf\xbf",
    b"\xef\xbf\xbe",
    b"\xed\x9f\xbf",
    b"\xee\x80\x80",
]
INVALID_UTF8 = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
    b"\x80",
    b"\xbf",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf",
    b"\xc1\xbf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xfe",
    b"\xff",
    b"\xc2",
    b"\xe0\xa0",
    b"Hello\xc2",
    b"\xce\xba\xe1\xbd",
]

for i, text in enumerate(VALID_UTF8):
    def run(port, path, text=text):
        c = Conn(port, path)
        c.send(frame(TEXT, text))
        echoed(c, TEXT, text)
        # The same cut into one-byte fragments, mid-character.
        if len(text) > 1:
            pieces = [text[j : j + 1] for j in range(len(text))]
            c.send(*[frame(TEXT if j == 0 else CONT, p, fin=j == len(pieces) - 1) for j, p in enumerate(pieces)])
            echoed(c, TEXT, text)

    CASES["6.a.%d valid UTF-8 %s" % (i, text.hex() or "empty")] = run

for i, text in enumerate(INVALID_UTF8):
    CASES["6.b.%d invalid UTF-8 %s" % (i, text.hex())] = failing([frame(TEXT, text)], code=1007)
    CASES["6.c.%d invalid UTF-8 in fragments %s" % (i, text.hex())] = failing(
        [frame(TEXT if j == 0 else CONT, text[j : j + 1], fin=j == len(text) - 1) for j in range(len(text))],
        code=1007,
    )


@case("6.4 invalid UTF-8 fails fast, before the message ends")
def _(port, path):
    c = Conn(port, path)
    c.send(frame(TEXT, "κόσμε".encode(), fin=False), frame(CONT, b"\xf4\x90\x80\x80", fin=False))
    closed_with(c, 1007)


@case("7.1.1 echo, then the close handshake")
def _(port, path):
    c = Conn(port, path)
    c.send(frame(TEXT, b"Hello"))
    echoed(c, TEXT, b"Hello")
    c.send(close_frame(1000))
    got = c.message()
    if got != ("close", 1000):
        raise Failed("the close answered with %r" % (got,))
    if c.next() != "closed":
        raise Failed("the server kept the TCP connection after the close handshake")


@case("7.1.3 nothing is answered after a close")
def _(port, path):
    c = Conn(port, path)
    c.send(close_frame(1000), frame(PING, b"after"), frame(TEXT, b"after"))
    got = c.message()
    if got != ("close", 1000):
        raise Failed("expected the close, got %r" % (got,))
    rest = c.next()
    if rest not in ("closed", "timeout"):
        raise Failed("a frame after the close: %r" % (rest,))


@case("7.1.5 a close in the middle of a fragmented message")
def _(port, path):
    c = Conn(port, path)
    c.send(frame(TEXT, b"frag", fin=False), close_frame(1000), frame(CONT, b"ment"))
    got = c.message()
    if got != ("close", 1000):
        raise Failed("expected the close, got %r" % (got,))


@case("7.3.1 a close without a body")
def _(port, path):
    c = Conn(port, path)
    c.send(close_frame())
    got = c.message()
    if got[0] != "close" or got[1] not in (None, 1000):
        raise Failed("the close answered with %r" % (got,))


CASES["7.3.2 a close with a one-byte body"] = failing([frame(CLOSE, b"\x03")])
CASES["7.3.6 a close with a 124-byte reason"] = failing([close_frame(1000, b"*" * 124)])
CASES["7.5.1 a close whose reason is not UTF-8"] = failing(
    [close_frame(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64")], code=1007
)


@case("7.3.5 a close with a 123-byte reason")
def _(port, path):
    c = Conn(port, path)
    c.send(close_frame(1000, b"*" * 123))
    got = c.message()
    if got != ("close", 1000):
        raise Failed("the close answered with %r" % (got,))


for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]:

    def run(port, path, code=code):
        c = Conn(port, path)
        c.send(close_frame(code))
        got = c.message()
        if got[0] != "close" or got[1] not in (code, 1000):
            raise Failed("close %d answered with %r" % (code, got))

    CASES["7.7 close code %d is accepted" % code] = run

for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999]:
    CASES["7.9 close code %d is refused" % code] = failing([close_frame(code)])

@case("9 a message over the limit")
def _(port, path):
    failing([frame(TEXT, b"x" * (LIMIT + 1))], code=1009)(port, path)


@case("9 fragments over the limit together")
def _(port, path):
    half = LIMIT // 2 + 1
    failing([frame(TEXT, b"x" * half, fin=False), frame(CONT, b"x" * half)], code=1009)(port, path)


def main():
    global LIMIT
    args = sys.argv[1:]
    port, path = int(args.pop(0)), args.pop(0)
    if args and args[0] == "--limit":
        LIMIT = int(args[1])
        args = args[2:]
    names = [n for n in CASES if not args or any(n.startswith(a) for a in args)]
    passed = 0
    for name in names:
        try:
            CASES[name](port, path)
            print("ok", name, flush=True)
            passed += 1
        except Failed as why:
            print("FAIL %s: %s" % (name, why), flush=True)
    print("passed %d of %d" % (passed, len(names)), flush=True)


if __name__ == "__main__":
    main()
