#!/usr/bin/env python3
"""A `websockets` echo server for ferrows' interop tests.

    echo_server.py [--port 0] [--no-compression] [--cert C --key K]

Prints `listening on ws://127.0.0.1:PORT` (or wss://) once it listens.
Every path echoes data messages; /cmd speaks the command protocol
(crates/ferrows/examples/interop/common.rs): fragmented messages sent
as an async iterator of fragments with a Ping between the first two, a
Ping that the client must answer, a Close with a chosen code, and the
Close frame each /echo/ID connection received.
"""

import argparse
import asyncio
import base64
import ssl
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from common import WAIT

# id of an echo connection -> (code, reason) of the Close it received, or
# None for a Close without a code.
seen = {}


async def echo(ws, conn_id):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass
    if conn_id is not None:
        rcvd = ws.protocol.close_rcvd
        seen[conn_id] = None if rcvd is None else (rcvd.code, rcvd.reason)


async def send_fragments(ws, kind, parts):
    async def fragments():
        for i, part in enumerate(parts):
            yield part
            if i == 0 and len(parts) > 1:
                # A control frame between two fragments of one message.
                await ws.ping(b"between fragments")

    await ws.send(fragments(), text=(kind == "text"))


async def close_seen(conn_id):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while conn_id not in seen:
        if loop.time() > deadline:
            return f"unknown {conn_id}"
        await asyncio.sleep(0.01)
    frame = seen[conn_id]
    return "closed none" if frame is None else f"closed {frame[0]} {frame[1]}"


async def commands(ws):
    async for line in ws:
        op, _, rest = line.partition(" ")
        if op == "fragments":
            kind, _, parts = rest.partition(" ")
            await send_fragments(ws, kind, [base64.b64decode(p) for p in parts.split(",")])
        elif op == "ping":
            pong = await ws.ping(base64.b64decode(rest))
            await asyncio.wait_for(pong, WAIT)
            await ws.send(f"pong {rest}")
        elif op == "close":
            code, _, reason = rest.partition(" ")
            await ws.close(int(code), reason)
        elif op == "close-seen":
            await ws.send(await close_seen(rest))
        else:
            raise ValueError(f"unknown command {op!r}")


async def handler(ws):
    path = ws.request.path
    if path == "/cmd":
        try:
            await commands(ws)
        except ConnectionClosed:
            pass
    else:
        await echo(ws, path[len("/echo/"):] if path.startswith("/echo/") else None)


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    tls = None
    if args.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
    async with serve(
        handler,
        "127.0.0.1",
        args.port,
        compression=None if args.no_compression else "deflate",
        max_size=None,
        ping_interval=None,
        ssl=tls,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on {'wss' if tls else 'ws'}://127.0.0.1:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
