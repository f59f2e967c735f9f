#!/usr/bin/env python3
"""A WAN-like link on loopback for the benchmarks: a TCP relay that passes each connection's
downstream bytes (server to client) at a fixed rate, and upstream bytes as they come.

nginx's limit_rate would do, but it lets the first second's worth through unthrottled, which
for a 64 MiB blob at 100 MB/s is the whole blob. Here every connection is paced from its
first byte, with at most 64 KiB ahead of the pace.

Usage: tests/bench/link.py LISTEN_PORT TARGET_PORT BYTES_PER_SECOND   (127.0.0.1 only)
"""
import asyncio
import sys
import time

PIECE = 64 * 1024


async def pipe(reader, writer, rate):
    """Copies reader to writer; with `rate`, no faster than `rate` bytes/s. Time the link
    stands idle earns no credit: a kept-alive connection's next response is paced too."""
    due = 0.0  # when the bytes sent so far are due at `rate`
    try:
        while True:
            data = await reader.read(PIECE)
            if not data:
                break
            if rate:
                now = time.monotonic()
                due = max(due, now) + len(data) / rate
                delay = due - now - PIECE / rate  # one piece may go ahead of the pace
                if delay > 0:
                    await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except ConnectionError:
            pass


async def serve(listen_port, target_port, rate):
    async def on_client(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, server_writer, 0),
                             pipe(server_reader, client_writer, rate))

    server = await asyncio.start_server(on_client, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
