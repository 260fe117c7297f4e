"""A plain asyncio server answering LIST: the "best plain Python" baseline.

Same reply as the real server, made by the same code (``server.storage.names_in``
reads the folder on every request, ``wire.ok_reply`` encodes the names), so
that every server in the bench does the same work per LIST and only what is
around it differs.  Anything but LIST gets an error reply.  Run:
``python -m bench.asyncio_list --port P --storage DIR [--style protocol|streams]``;
SIGTERM/SIGINT stop it.
"""

import argparse
import asyncio
import signal

import wire
from server.storage import names_in

TERMINATOR = wire.TERMINATOR


def list_reply(root: str) -> bytes:
    return wire.ok_reply(names_in(root))


def answer(line: bytes, root: str) -> bytes:
    if line.strip().upper() == b"LIST":
        return list_reply(root)
    return wire.error_reply("only LIST here")


class ListProtocol(asyncio.Protocol):
    def __init__(self, root: str):
        self.root, self.buffer, self.transport = root, b"", None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        self.buffer += data
        while (end := self.buffer.find(TERMINATOR)) >= 0:
            line, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            self.transport.write(answer(line, self.root))
        if len(self.buffer) > 4096:
            self.transport.close()


async def serve_stream(reader, writer, root: str):
    try:
        while True:
            line = await reader.readuntil(TERMINATOR)
            writer.write(answer(line[:-4], root))
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int, root: str, style: str) -> None:
    loop = asyncio.get_running_loop()
    if style == "streams":
        server = await asyncio.start_server(lambda r, w: serve_stream(r, w, root),
                                            "127.0.0.1", port, backlog=1024)
    else:
        server = await loop.create_server(lambda: ListProtocol(root),
                                          "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--style", choices=("protocol", "streams"), default="protocol")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.storage, args.style))
