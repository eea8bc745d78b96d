"""#13 item 13: a weak GRIP key (Pushpin's ``changeme``, or under 32 bytes) trusts nobody.

The system check reports it (tidings.E002/E003); a server started anyway must not take
a ``Grip-Sig`` signed with it as the proxy's, since anyone can make one. A real server
(no Pushpin is needed: the point is that no proxy is believed), real HTTP requests.
"""

from __future__ import annotations

import time
import warnings

import httpx
import jwt
import pytest

from tests.test_grip_security import ws_events

STRONG = "s" * 48
NOWHERE = "http://127.0.0.1:9"  # nothing is published in these tests


def signed(key: str) -> dict[str, str]:
    claims = {"iss": "pushpin", "exp": int(time.time()) + 60}
    with warnings.catch_warnings():  # PyJWT warns of short keys: forging with one is the point
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return {"Grip-Sig": jwt.encode(claims, key, algorithm="HS256")}


def grip(key: str) -> dict[str, object]:
    return {"GRIP": {"CONTROL_URI": NOWHERE, "KEY": key, "ISS": "pushpin"}}


@pytest.mark.parametrize("key", ["changeme", "k" * 31])
def test_a_grip_sig_signed_with_a_weak_key_is_not_the_proxys(make_server, tmp_path, key):
    log = tmp_path / "server.log"
    with make_server(grip(key), log_path=str(log)) as server:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for _ in range(2):  # a long-poll is held here, not handed to a proxy
                r = http.get(
                    "/realtime/poll",
                    params={"topic": "test.weak", "timeout": 0},
                    headers=signed(key),
                )
                assert r.status_code == 200 and "grip-hold" not in r.headers
                assert r.json()["messages"] == []
            with http.stream(
                "GET", "/realtime/sse", params={"topic": "test.weak"}, headers=signed(key)
            ) as stream:  # an SSE stream is served here too, with no GRIP instruction
                assert stream.status_code == 200
                assert "grip-hold" not in stream.headers
                assert stream.headers["content-type"].startswith("text/event-stream")
            r = http.post(  # only the proxy may speak WebSocket-over-HTTP
                "/realtime/ws",
                content=ws_events(("OPEN", None)),
                headers={
                    "Content-Type": "application/websocket-events",
                    "Origin": server.url,
                    **signed(key),
                },
            )
            assert r.status_code == 403
    said = log.read_text()
    assert said.count("are not trusted as the proxy's") == 1, said  # why, once
    assert "tidings.E00" in said  # the system check said it at startup too


def test_a_strong_key_still_makes_the_proxys_requests_grip_answers(make_server):
    with make_server(grip(STRONG)) as server:
        r = httpx.get(
            server.url + "/realtime/poll",
            params={"topic": "test.strong", "timeout": 5},
            headers=signed(STRONG),
            timeout=10,
        )
        assert r.headers["grip-hold"] == "response"
        forged = httpx.get(
            server.url + "/realtime/poll",
            params={"topic": "test.strong", "timeout": 0},
            headers=signed("changeme"),
            timeout=10,
        )
        assert "grip-hold" not in forged.headers
