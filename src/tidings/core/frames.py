"""The WebSocket protocol's frames: what each output looks like on the wire.

Built once per output; a published message's frame is :attr:`Message.ws_frame`,
built once per message for every subscriber.
"""

from __future__ import annotations

import json
from typing import Any

from tidings.core.messages import Message, Position
from tidings.core.protocol import (
    Answer,
    Error,
    Gap,
    Joined,
    Output,
    PresenceFrame,
    RequestId,
    Snapshot,
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def reply_frame(rid: RequestId, fields: dict[str, Any]) -> str:
    """``{"id", "ok": true, ...fields}``; positions in ``fields`` are written as text."""
    if type(rid) is int and fields.keys() == {"topic", "position"}:
        # the reply to every publish: built by hand (topics and positions need no escaping)
        position = fields["position"]
        position = "null" if position is None else f'"{position}"'
        return f'{{"id":{rid},"ok":true,"topic":"{fields["topic"]}","position":{position}}}'
    out = {"id": rid, "ok": True}
    for name, value in fields.items():
        out[name] = str(value) if isinstance(value, Position) else value
    return _dumps(out)


def error_frame(error: Error) -> str:
    detail = {"code": error.code, "message": error.message}
    return _dumps({"id": error.id, "ok": False, "error": detail})


def joined_info(joined: Joined) -> dict[str, Any]:
    """What a client is told of a topic it joined: its ``position`` and, when it
    resumed, whether the replay is complete (``recovered``). Every transport says it
    so: the subscribe reply, SSE's ``tidings.open``, long-poll's ``topics``."""
    info: dict[str, Any] = {"position": str(joined.position)}
    if joined.recovered is not None:
        info["recovered"] = joined.recovered
    return info


def gap_frame(gap: Gap) -> str:
    """``{"op": "gap", "topic", "position"}`` (topics and positions need no escaping)."""
    return f'{{"op":"gap","topic":"{gap.topic}","position":"{gap.position}"}}'


def close_event(code: int, reason: str) -> str:
    """The SSE event that ends a stream the server closes (``tidings.close``)."""
    return f"event: tidings.close\ndata: {json.dumps({'code': code, 'reason': reason})}\n\n"


def ws_text(output: Output) -> str | None:
    """The WebSocket protocol frame of an output (``None``: nothing to send for it)."""
    if type(output) is Message:
        return output.ws_frame
    if isinstance(output, Joined):
        return (
            None
            if output.id is None
            else reply_frame(output.id, {"topic": output.topic, **joined_info(output)})
        )
    if isinstance(output, Answer):
        return None if output.id is None else reply_frame(output.id, output.fields)
    if isinstance(output, Error):
        return error_frame(output)
    if isinstance(output, PresenceFrame):
        return output.text
    if isinstance(output, Gap):
        return gap_frame(output)
    if isinstance(output, Snapshot):
        return _dumps(
            {
                "op": "snapshot",
                "topic": output.topic,
                "position": str(output.position),
                "rows": output.rows,
            }
        )
    return None
