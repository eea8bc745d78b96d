"""Tokens (tidings.token) against a real server: a client with no cookie is who its
token says on every transport; expiry, forgery and a password change end it; a grant
subscribes without the rules; CORS lets another origin use SSE and long-poll; and one
user's connections are capped."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest
from django.contrib.auth.models import User
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

import tidings
from tidings.client import ClientError, connect


def user(prefix: str = "tok") -> User:
    return User.objects.create_user(f"{prefix}-{secrets.token_hex(4)}", password="pw-token-1")


async def a_user(prefix: str = "tok") -> User:
    return await asyncio.to_thread(user, prefix)


def raw_socket(srv, token: str):
    """A plain ``websockets`` connection offering ``token`` as a browser would."""
    protocols = [Subprotocol("tidings"), Subprotocol("tidings.token." + token)]
    return ws_connect(srv.ws_url, additional_headers={"Origin": srv.url}, subprotocols=protocols)


async def test_a_websocket_with_a_token_is_its_user(server):
    ann = await a_user()
    async with connect(server.ws_url, token=tidings.token(ann)) as client:
        sub = await client.subscribe("whoami.tok")
        await client.publish("whoami.tok", "hi")
        assert (await sub.get(timeout=5)).data == {"user": ann.username, "said": "hi"}
        await client.subscribe("members.tok")  # "authenticated" rules pass
    async with raw_socket(server, tidings.token(ann)) as ws:
        assert ws.subprotocol == "tidings"  # the server picks one a browser offered


async def test_sse_and_long_poll_take_a_bearer_token_or_a_query_token(server):
    ann = await a_user()
    token = tidings.token(ann)
    async with httpx.AsyncClient(base_url=server.url) as http:
        refused = await http.get("/realtime/poll?topic=members.x&timeout=0")
        assert refused.status_code == 403
        bearer = {"Authorization": f"Bearer {token}"}
        poll = await http.get("/realtime/poll?topic=members.x&timeout=0", headers=bearer)
        assert poll.status_code == 200, poll.text
        url = f"/realtime/sse?topic=members.x&token={token}"
        async with http.stream("GET", url) as stream:
            assert stream.status_code == 200
        published = await http.post(
            "/realtime/publish", json={"topic": "members.x", "data": 1}, headers=bearer
        )
        assert published.status_code == 200 and published.json()["ok"], published.text


async def test_an_expired_forged_or_outdated_token_is_refused(server):
    ann = await a_user()
    expired = tidings.token(ann, ttl=0.001)
    forged = tidings.token(ann)[:-2] + "xx"
    outdated = tidings.token(ann)
    ann.set_password("a-new-password")  # ends every token of the user, as it ends sessions
    await asyncio.to_thread(ann.save)
    await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=server.url) as http:
        for token, why in ((expired, "token expired"), (forged, "invalid token")):
            r = await http.get(f"/realtime/poll?topic=test.x&timeout=0&token={token}")
            assert r.status_code == 401, r.text
            assert r.json()["error"] == {
                "code": "unauthorized",
                "message": f"{why}: fetch a new token.",
            }
        r = await http.get(
            "/realtime/sse?topic=test.x", headers={"Authorization": f"Bearer {outdated}"}
        )
        assert r.status_code == 401
    async with raw_socket(server, expired) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert (ws.close_code, ws.close_reason) == (4401, "token expired")


async def test_a_connection_ends_when_its_token_expires_and_get_token_gives_a_fresh_one(server):
    ann = await a_user()
    handed = []

    def fresh() -> str:
        handed.append(time.monotonic())
        return tidings.token(ann, ttl=1.0)

    async with connect(server.ws_url, token=fresh) as client:
        sub = await client.subscribe("test.expiry-" + secrets.token_hex(4))
        await asyncio.sleep(1.5)  # the first token ran out: closed 4401, back with a new one
        assert client.last_close == (4401, "token expired")
        await client.publish(sub.topic, "after")
        assert (await sub.get(timeout=5)).data == "after"
    assert len(handed) >= 2


async def test_a_grant_subscribes_without_the_rules_and_only_to_its_topics(server):
    ann = await a_user()
    async with connect(server.ws_url, token=tidings.token(ann, topics=["deny.granted-*"])) as c:
        await c.subscribe("deny.granted-1")  # the rule refuses everyone; the grant lets in
        with pytest.raises(ClientError) as refused:
            await c.subscribe("deny.other")
        assert refused.value.code == "forbidden"
        with pytest.raises(ClientError):  # a grant is to subscribe, not to publish
            await c.publish("deny.granted-1", "x")


async def test_another_origin_may_use_sse_and_long_poll_with_cors(make_server):
    app = "https://app.example"
    ann = await a_user()
    with make_server({"ALLOWED_ORIGINS": [app]}) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            preflight = await http.options(
                "/realtime/sse",
                headers={
                    "Origin": app,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "authorization, last-event-id",
                },
            )
            assert preflight.status_code == 204
            assert preflight.headers["Access-Control-Allow-Origin"] == app
            allowed = preflight.headers["Access-Control-Allow-Headers"]
            assert "Authorization" in allowed and "Last-Event-ID" in allowed
            headers = {"Origin": app, "Authorization": f"Bearer {tidings.token(ann)}"}
            poll = await http.get("/realtime/poll?topic=members.c&timeout=0", headers=headers)
            assert poll.status_code == 200
            assert poll.headers["Access-Control-Allow-Origin"] == app
            assert "Origin" in poll.headers["Vary"]
            evil = await http.get(
                "/realtime/poll?topic=test.c&timeout=0", headers={"Origin": "https://evil.example"}
            )
            assert evil.status_code == 403 and "Access-Control-Allow-Origin" not in evil.headers
            denied = await http.options(
                "/realtime/poll", headers={"Origin": "https://evil.example"}
            )
            assert denied.status_code == 403


async def test_one_user_holds_at_most_max_connections_per_user(make_server):
    ann = await a_user()
    with make_server({"MAX_CONNECTIONS_PER_USER": 2}) as srv:
        token = tidings.token(ann)
        async with connect(srv.ws_url, token=token) as one, connect(srv.ws_url, token=token) as two:
            await one.subscribe("test.cap")
            await two.subscribe("test.cap")
            origin = {"Origin": srv.url}
            protocols = ["tidings", "tidings.token." + token]
            async with ws_connect(
                srv.ws_url, additional_headers=origin, subprotocols=protocols
            ) as ws:
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
            assert ws.close_code == 4029 and "more than 2 connections" in ws.close_reason
            async with httpx.AsyncClient(base_url=srv.url) as http:
                bearer = {"Authorization": f"Bearer {token}"}
                r = await http.get("/realtime/poll?topic=test.cap&timeout=0", headers=bearer)
            assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_connections"
            async with connect(srv.ws_url) as anonymous:  # others are not counted with her
                await anonymous.subscribe("test.cap")
