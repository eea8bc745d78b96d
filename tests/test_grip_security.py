"""GRIP security: only a request signed by the proxy (Grip-Sig, HS256, unexpired) gets
GRIP answers or has its proxy-only headers read; the system check refuses weak keys."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from django.test import RequestFactory, override_settings

from tests.pushpin_server import Pushpin, grip_stack
from tidings.checks import check_settings
from tidings.conf import GripProxy
from tidings.grip import signature as grip
from tidings.testing import LiveServer

KEY = "k" * 64
PROXY = GripProxy("http://127.0.0.1:1", KEY.encode(), "pushpin")


def token(key: str = KEY, alg: str = "HS256", **claims: object) -> str:
    claims = {"iss": "pushpin", "exp": int(time.time()) + 60, **claims}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=alg)


def test_a_valid_grip_sig_verifies():
    assert grip.verify_sig(token(), [PROXY])


@pytest.mark.parametrize(
    "bad",
    [
        token(key="x" * 64),  # another key
        token(exp=int(time.time()) - 60),  # expired
        token(exp=None),  # no exp
        token(iss="someone-else"),  # not the configured issuer
        token(alg="HS512"),  # the algorithm is pinned to HS256
        jwt.encode({"iss": "pushpin", "exp": int(time.time()) + 60}, None, algorithm="none"),
        "not-a-token",
    ],
)
def test_a_bad_grip_sig_does_not(bad):
    assert not grip.verify_sig(bad, [PROXY])


GRIP_SETTING = {"CONTROL_URI": "http://127.0.0.1:1", "KEY": KEY, "ISS": "pushpin"}


@override_settings(TIDINGS={"GRIP": GRIP_SETTING})
def test_proxy_only_headers_are_ignored_without_a_valid_signature():
    rf = RequestFactory()
    headers = {"Grip-Last": 'test.a; last-id="e:1"', "Meta-Topics": "test.a", "Grip-Sig": "x"}
    forged = rf.get("/", headers=headers)
    assert not grip.proxied(forged)
    assert grip.grip_last(forged) == {} and grip.meta(forged, "Topics") is None
    signed = rf.get("/", headers={**headers, "Grip-Sig": token()})
    assert grip.proxied(signed)
    assert grip.grip_last(signed) == {"test.a": "e:1"}
    assert grip.meta(signed, "Topics") == "test.a"


@pytest.mark.parametrize(
    ("key", "code"),
    [("changeme", "tidings.E002"), ("short-key", "tidings.E003"), ("s" * 32, None)],
)
def test_the_system_check_refuses_default_and_short_keys(key, code):
    with override_settings(TIDINGS={"GRIP": {**GRIP_SETTING, "KEY": key}}):
        ids = [m.id for m in check_settings()]
    assert ids == ([code] if code else [])


def test_grip_setting_shape_errors():
    with override_settings(TIDINGS={"GRIP": {"CONTROL_URI": "http://x"}}):
        assert [m.id for m in check_settings()] == ["tidings.E001"]  # KEY is required


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LiveServer, Pushpin]]:
    with grip_stack() as s:
        yield s


def test_direct_requests_with_a_forged_grip_sig_are_held_in_process(stack):
    server, proxy = stack
    url = f"{server.url}/realtime/poll"
    params = {"topic": "test.gsec", "timeout": 1}
    forged = httpx.get(url, params=params, headers={"Grip-Sig": token(key="x" * 64)}, timeout=10)
    assert forged.status_code == 200 and "grip-hold" not in forged.headers
    signed = httpx.get(url, params=params, headers={"Grip-Sig": token(key=proxy.key)}, timeout=10)
    assert signed.headers["grip-hold"] == "response"
    assert signed.headers["grip-channel"].startswith("tidings.t.test.gsec; prev-id=")


def ws_events(*events: tuple[str, bytes | None]) -> bytes:
    out = b""
    for kind, content in events:
        out += kind.encode()
        if content is not None:
            out += b" %x\r\n" % len(content) + content
        out += b"\r\n"
    return out


def test_ws_over_http_needs_the_proxy_signature_and_an_allowed_origin(stack):
    server, proxy = stack
    url = f"{server.url}/realtime/ws"
    body = ws_events(("OPEN", None))
    base = {"Content-Type": "application/websocket-events", "Origin": server.url}
    r = httpx.post(url, content=body, headers=base)
    assert r.status_code == 403  # no Grip-Sig: not from the proxy
    r = httpx.post(url, content=body, headers={**base, "Grip-Sig": token(key="y" * 64)})
    assert r.status_code == 403
    signed = {**base, "Grip-Sig": token(key=proxy.key)}
    r = httpx.post(url, content=body, headers={**signed, "Origin": "http://evil.example"})
    assert r.status_code == 403  # foreign origin
    r = httpx.post(url, content=body, headers=signed)  # no CSRF token needed
    assert r.status_code == 200 and r.content.startswith(b"OPEN\r\n")
    assert r.headers["sec-websocket-extensions"] == "grip"
    # Meta-Topics from a forged request is not trusted: unsubscribe is refused
    frame = b'{"id":1,"op":"unsubscribe","topic":"test.a"}'
    forged_meta = {**base, "Meta-Topics": "test.a", "Grip-Sig": token(key="y" * 64)}
    r = httpx.post(url, content=ws_events(("TEXT", frame)), headers=forged_meta)
    assert r.status_code == 403
    r = httpx.post(url, content=ws_events(("TEXT", frame)), headers={**signed})
    assert b"not_subscribed" in r.content
    r = httpx.post(
        url, content=ws_events(("TEXT", frame)), headers={**signed, "Meta-Topics": "test.a"}
    )
    assert b'"ok":true' in r.content and r.headers["set-meta-topics"] == ""
