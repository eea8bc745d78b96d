"""permessage-deflate bombs: a frame is measured after inflating, and refused (1009)
before it is buffered, as served (tidings.serve's WebSocket protocol)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tidings.testing import Client


async def test_a_frame_that_inflates_past_max_frame_bytes_closes_1009(server):
    async with Client(server.ws_url, origin=server.url) as bystander:
        await bystander.subscribe("test.deflate")
        async with connect(server.ws_url, origin=server.url, compression="deflate") as bomb:
            assert bomb.protocol.extensions, "permessage-deflate was negotiated"
            # 4 MiB of one letter: ~4 KB on the wire, 64 times MAX_FRAME_BYTES inflated
            await bomb.send(json.dumps({"id": 1, "op": "ping", "pad": "x" * (4 << 20)}))
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(bomb.recv(), 10)
            assert e.value.rcvd is not None and e.value.rcvd.code == 1009
        async with Client(server.ws_url, origin=server.url) as pub:
            await pub.publish("test.deflate", "still served")
        assert (await bystander.next_message())["data"] == "still served"


async def test_a_frame_of_max_frame_bytes_inflated_is_still_read(make_server):
    with make_server({"MAX_FRAME_BYTES": 4096}) as srv:
        async with connect(srv.ws_url, origin=srv.url, compression="deflate") as ws:
            frame = json.dumps({"id": 1, "op": "ping", "pad": ""})
            frame = frame.replace('""', '"' + "x" * (4096 - len(frame)) + '"')
            assert len(frame) == 4096
            await ws.send(frame)
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"id": 1, "ok": True}
            await ws.send(frame[:-2] + 'x"}')  # one byte more
            with pytest.raises(ConnectionClosed) as e:
                await asyncio.wait_for(ws.recv(), 5)
            assert e.value.rcvd is not None and e.value.rcvd.code == 1009
