#!/usr/bin/env python3
"""`websockets` as the client of a ferrows server, for the interop tests.

    client.py URL [--no-compression] [--expect-compression yes|no]
                  [--ca CERT.pem] [--commands]

Against URL/echo/ID: text and binary echoes of every size in SIZES byte for
byte, a burst of small messages, fragmented messages (an async iterator of
str fragments, bytes fragments split inside characters with text=True, an
iterator of large binary fragments, a Ping between two fragments), a Ping
answered by a Pong, and a Close with 4001 "bye" that the server must echo.
With --commands (the server speaks the command protocol on URL/cmd): the
server saw 4001 "bye", messages the server sends (fragmented if it is set
to), a Ping from the server, and the server's Close 4000 "done". Every wait
is bounded; exit code 0 when every check passed.
"""

import argparse
import asyncio
import base64
import os
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from common import SIZES, WAIT, binary_payload, check_same, describe, text_payload


def log(line):
    print(line, flush=True)


async def bounded(what, awaitable):
    try:
        return await asyncio.wait_for(awaitable, WAIT)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {WAIT} s: {what}") from None


async def open_ws(url, args):
    tls = None
    if url.startswith("wss://"):
        tls = ssl.create_default_context(cafile=args.ca)
    return await bounded(
        f"connect {url}",
        connect(
            url,
            compression=None if args.no_compression else "deflate",
            max_size=None,
            ping_interval=None,
            ssl=tls,
            open_timeout=WAIT,
            close_timeout=WAIT,
        ),
    )


async def echo(ws, message, what):
    await bounded(what, ws.send(message))
    got = await bounded(what, ws.recv())
    check_same(got, message, what)


async def echo_sizes(ws):
    for i, size in enumerate(SIZES):
        for message in (text_payload(size, i), binary_payload(size, 1000 + i)):
            await echo(ws, message, f"echo of {describe(message)}")
    log(f"ok: text and binary echoes of {SIZES} bytes")


async def echo_burst(ws):
    rng = __import__("random").Random(77)
    sent = []
    for i in range(200):
        size = rng.randrange(600)
        message = text_payload(size, 5000 + i) if i % 2 == 0 else binary_payload(size, 5000 + i)
        await bounded("send burst", ws.send(message))
        sent.append(message)
    for i, want in enumerate(sent):
        check_same(await bounded("burst echo", ws.recv()), want, f"echo {i} of the burst")
    log(f"ok: burst of {len(sent)} small messages echoed in order")


async def fragmented_to_server(ws):
    async def str_fragments():
        for part in ["héllo ", "", "wörld 😀 ", "𝄞", ""]:
            yield part

    await bounded("fragmented str", ws.send(str_fragments()))
    check_same(await bounded("fragmented str echo", ws.recv()), "héllo wörld 😀 𝄞", "str fragments")

    # Bytes split every 3 bytes, inside characters, sent as text.
    whole = "héllo, wörld: 1€ 😀 𝄞 中文!".encode()
    parts = [whole[i : i + 3] for i in range(0, len(whole), 3)]
    await bounded("fragmented text bytes", ws.send(parts, text=True))
    check_same(await bounded("echo", ws.recv()), whole.decode(), "text split inside characters")

    # Large binary fragments, one empty.
    blobs = [binary_payload(n, 700 + i) for i, n in enumerate([1 << 20, 0, 3 << 20, 1])]
    await bounded("fragmented binary", ws.send(blobs))
    check_same(await bounded("echo", ws.recv()), b"".join(blobs), "binary in large fragments")

    # A Ping between two fragments of one message.
    pongs = []

    async def with_ping():
        yield "before the ping, "
        pongs.append(await ws.ping(b"mid-message"))
        yield "after the ping"

    await bounded("fragments around a Ping", ws.send(with_ping()))
    check_same(await bounded("echo", ws.recv()), "before the ping, after the ping", "fragments around a Ping")
    await bounded("Pong to the Ping between fragments", pongs[0])
    log("ok: fragmented messages reassembled and echoed (str, bytes split inside characters, 4 MiB, Ping between)")


async def ping_pong(ws):
    pong = await bounded("send Ping", ws.ping("python ping ✓".encode()))
    await bounded("Pong", pong)
    log("ok: Ping answered by a Pong")


async def close_4001(ws):
    await bounded("closing handshake", ws.close(4001, "bye"))
    rcvd = ws.protocol.close_rcvd
    if rcvd is None or rcvd.code != 4001:
        raise AssertionError(f"the server answered our Close 4001 with {rcvd}")
    log("ok: Close 4001 echoed by the server")


async def command(cmd, line):
    await bounded(line.split(" ")[0], cmd.send(line))
    return await bounded(f"answer to {line.split(' ')[0]}", cmd.recv())


async def commands(args, conn_id):
    cmd = await open_ws(f"{args.url}/cmd", args)
    seen = await command(cmd, f"close-seen {conn_id}")
    if seen != "closed 4001 bye":
        raise AssertionError(f"the server saw our Close as {seen!r}, expected 'closed 4001 bye'")
    log("ok: the server saw Close 4001 'bye'")

    whole = "fragments: héllo wörld 😀 𝄞 中文".encode()
    text_parts = [b"", whole[:5], whole[5:21], b"", whole[21:]]
    big = text_payload(300_000, 9).encode()
    big_parts = [big[:100_001], big[100_001:200_003], big[200_003:]]
    blobs = [binary_payload(n, 300 + i) for i, n in enumerate([0, 1, 125, 65536, 1 << 20, 7])]
    for kind, parts in [("text", text_parts), ("text", big_parts), ("binary", blobs)]:
        want = b"".join(parts)
        if kind == "text":
            want = want.decode()
        encoded = ",".join(base64.b64encode(p).decode() for p in parts)
        got = await command(cmd, f"fragments {kind} {encoded}")
        check_same(got, want, f"{kind} message of {len(parts)} parts from the server")
    log("ok: messages sent by the server (in fragments where it fragments) received whole")

    payload = base64.b64encode("server ping ✓".encode()).decode()
    answer = await command(cmd, f"ping {payload}")
    if answer != f"pong {payload}":
        raise AssertionError(f"the server's Ping: it reported {answer!r}")
    log("ok: the server's Ping was answered")

    await bounded("send close command", cmd.send("close 4000 done"))
    try:
        extra = await bounded("the server's Close", cmd.recv())
        raise AssertionError(f"expected the server's Close, got {describe(extra)}")
    except ConnectionClosed:
        pass
    await bounded("connection end", cmd.wait_closed())
    rcvd = cmd.protocol.close_rcvd
    if rcvd is None or (rcvd.code, rcvd.reason) != (4000, "done"):
        raise AssertionError(f"the server's Close: got {rcvd}, expected 4000 'done'")
    log("ok: the server's Close 4000 'done' arrived")


async def run(args):
    conn_id = f"python-{os.getpid()}"
    url = f"{args.url}/echo/{conn_id}"
    ws = await open_ws(url, args)
    names = [e.name for e in ws.protocol.extensions]
    compressed = "permessage-deflate" in names
    log(f"connected to {url} (extensions: {names})")
    if args.expect_compression is not None and compressed != (args.expect_compression == "yes"):
        raise AssertionError(f"permessage-deflate in force: {compressed}, expected {args.expect_compression}")
    await echo_sizes(ws)
    await echo_burst(ws)
    await fragmented_to_server(ws)
    await ping_pong(ws)
    await close_4001(ws)
    if args.commands:
        await commands(args, conn_id)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--expect-compression", choices=["yes", "no"])
    parser.add_argument("--ca")
    parser.add_argument("--commands", action="store_true")
    args = parser.parse_args()
    args.url = args.url.rstrip("/")
    try:
        asyncio.run(run(args))
    except (AssertionError, ConnectionClosed, OSError) as e:
        print(f"python client: FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    log("python client: all checks passed")


if __name__ == "__main__":
    main()
