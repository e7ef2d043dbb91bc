#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that adds network latency, for the download benchmark.

bench/download.sh uses bench/latency-proxy.c, the same link in C, unless LATENCY_PROXY=python:
this one took some 3 CPU-s at 20 ms for the bench's 0.94 GB and could not carry 100 MB/s over
one connection. It stays as the readable statement of the link, and for comparison.

This kernel has no netem, so the delay is added here: a new connection is held for one RTT
before any byte passes (the handshake of a real link), and every chunk read from either side is
forwarded half an RTT after it arrived. Chunks are delayed, not serialised: a chunk is scheduled
when it arrives and sent when its time comes, so the link keeps its bandwidth and only gains
latency (as a long, fat pipe does). Order within a direction is kept.

usage: latency-proxy.py LISTEN_PORT UPSTREAM_PORT RTT_MS [MBYTES_PER_S]
With MBYTES_PER_S, downstream bytes (server to client) of all connections together are also
capped at that rate (one shared link, as a DSL line or a saturated uplink is).
Listens on 127.0.0.1:LISTEN_PORT (0: pick one), forwards to 127.0.0.1:UPSTREAM_PORT, prints
"listening PORT" on stdout once ready, runs until SIGTERM/SIGINT. Python standard library only.
"""
import asyncio
import signal
import sys

HOST = "127.0.0.1"  # never anything else
CHUNK = 256 * 1024
QUEUE_CHUNKS = 256  # back-pressure: at most this many chunks in flight per direction


class Link:
    """One bandwidth cap shared by every connection: a chunk may leave once the link has
    carried the chunks before it at `rate` bytes/s."""

    def __init__(self, rate):
        self.rate = rate
        self.free_at = 0.0

    async def take(self, n, loop):
        if not self.rate:
            return
        start = max(loop.time(), self.free_at)
        self.free_at = start + n / self.rate
        wait = self.free_at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)


link = Link(0)


async def pump(reader, writer, delay, loop, capped=False):
    """Copies reader to writer, each chunk delivered `delay` seconds after it was read."""
    queue = asyncio.Queue(QUEUE_CHUNKS)

    async def receive():
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((loop.time() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time() + delay, b""))

    async def send():
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                if capped:
                    await link.take(len(data), loop)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    receiving = asyncio.ensure_future(receive())
    try:
        await send()
    finally:
        receiving.cancel()


async def handle(client_reader, client_writer, upstream_port, rtt, loop):
    try:
        await relay(client_reader, client_writer, upstream_port, rtt, loop)
    except asyncio.CancelledError:
        pass  # shutting down: connections still open are simply dropped


async def relay(client_reader, client_writer, upstream_port, rtt, loop):
    try:
        await asyncio.sleep(rtt)  # connection setup: one round trip
        up_reader, up_writer = await asyncio.open_connection(HOST, upstream_port)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            pump(client_reader, up_writer, rtt / 2, loop),
            pump(up_reader, client_writer, rtt / 2, loop, capped=True),
        )
    finally:
        for w in (up_writer, client_writer):
            try:
                w.close()
            except OSError:
                pass


async def main():
    if len(sys.argv) not in (4, 5):
        print("usage: latency-proxy.py LISTEN_PORT UPSTREAM_PORT RTT_MS [MBYTES_PER_S]", file=sys.stderr)
        sys.exit(2)
    listen_port, upstream_port, rtt = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000
    if len(sys.argv) == 5:
        link.rate = float(sys.argv[4]) * 1e6
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream_port, rtt, loop), HOST, listen_port, backlog=256)
    print("listening", server.sockets[0].getsockname()[1], flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


if __name__ == "__main__":
    asyncio.run(main())
