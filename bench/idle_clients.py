#!/usr/bin/env python3
"""Opens N idle WebSocket connections to a server and holds them open.

    python3 bench/idle_clients.py ws://127.0.0.1:PORT [-n 10000] [--parallel 256]

Each connection does a plain HTTP/1.1 upgrade handshake over a raw socket
(no compression offered, standard library only), checks the 101 answer and
its Sec-WebSocket-Accept, then sends nothing more. When every connection is
open the script prints `ready N` on stdout and holds the sockets until it
gets SIGTERM or SIGINT. A failed connection makes
it print `error: ...` on stderr and exit 1.

scripts/bench.sh reads the server's RSS before starting this and after
`ready`, and divides the growth by N.
"""

import argparse
import asyncio
import base64
import hashlib
import os
import resource
import signal
import sys
import urllib.parse

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def handshake(host, port, path, sem):
    async with sem:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16))
        writer.write(
            b"GET " + path.encode() + b" HTTP/1.1\r\n"
            b"Host: " + f"{host}:{port}".encode() + b"\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise RuntimeError(f"handshake refused: {status!r}")
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        if accept.lower() not in head.lower():
            raise RuntimeError("wrong Sec-WebSocket-Accept")
        return writer


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("-n", "--connections", type=int, default=10000)
    parser.add_argument("--parallel", type=int, default=256, help="handshakes in flight at once")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 64
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            sys.exit(f"error: need {want} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    url = urllib.parse.urlsplit(args.url)
    host, port, path = url.hostname, url.port or 80, url.path or "/"
    sem = asyncio.Semaphore(args.parallel)
    tasks = [asyncio.create_task(handshake(host, port, path, sem)) for _ in range(args.connections)]
    try:
        writers = await asyncio.gather(*tasks)
    except Exception as e:  # noqa: BLE001 - any failure ends the measurement
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        os._exit(1)
    print(f"ready {len(writers)}", flush=True)

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    for w in writers:
        w.transport.abort()


if __name__ == "__main__":
    asyncio.run(main())
