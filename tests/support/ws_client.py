"""Python's `websockets` client against a percore WebSocket route.

    python ws_client.py PORT

Runs each check in turn and prints one line per check, "name: result",
for the Rust test to compare; every wait has a timeout.
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main(port):
    base = f"ws://127.0.0.1:{port}"
    async with connect(f"{base}/echo", max_size=None) as ws:
        await ws.send("héllo, wörld")
        print("text:", await asyncio.wait_for(ws.recv(), 10))
        await ws.send(b"\x00\x01\xff")
        print("binary:", (await asyncio.wait_for(ws.recv(), 10)).hex())
        # A message in three fragments comes back whole.
        await ws.send(iter(["frag", "men", "ted"]))
        print("fragmented:", await asyncio.wait_for(ws.recv(), 10))
        big = "x" * 60000
        await ws.send(big)
        print("large:", len(await asyncio.wait_for(ws.recv(), 10)))
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 10)
        print("ping: answered")
        await ws.close(code=1000, reason="done")
        print("close:", ws.close_code, ws.close_reason)
    async with connect(f"{base}/echo", max_size=None) as ws:
        await ws.send("y" * 70000)
        try:
            await asyncio.wait_for(ws.recv(), 10)
            print("oversize: answered")
        except ConnectionClosed as closed:
            print("oversize:", closed.rcvd.code if closed.rcvd else None)
    async with connect(f"{base}/bye") as ws:
        print("server says:", await asyncio.wait_for(ws.recv(), 10))
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            print("server closed:", closed.rcvd.code if closed.rcvd else None)
    async with connect(f"{base}/echo", subprotocols=["chat", "superchat"]) as ws:
        print("subprotocol:", ws.subprotocol)


asyncio.run(main(int(sys.argv[1])))
