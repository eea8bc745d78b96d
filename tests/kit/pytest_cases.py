"""The kit under pytest-django (run by tests/test_testing_kit.py): the same in-process
client and the ``tidings_published`` fixture of tidings' pytest plugin."""

import pytest
from demo.chat.models import ChatMessage
from django.contrib.auth.models import User

from tidings.client import ClientError
from tidings.testing import connect


@pytest.mark.django_db
def test_a_view_publishes(client, tidings_published, django_capture_on_commit_callbacks):
    body = {"topic": "test.kit-view", "n": 1, "transaction": "commit"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/test/publish", body, content_type="application/json")
    assert response.status_code == 200
    tidings_published.assert_published("test.kit-view")


@pytest.mark.django_db(transaction=True)
async def test_a_handler_and_a_rule(tidings_published):
    alice = await User.objects.acreate(username="alice")
    async with connect(user=alice) as client, connect() as anonymous:
        sub = await client.subscribe("whoami.lobby")
        await client.publish("whoami.lobby", "hi")
        assert (await sub.get(timeout=5)).data == {"user": "alice", "said": "hi"}
        with pytest.raises(ClientError, match=r"members\.lounge"):
            await anonymous.subscribe("members.lounge")
    tidings_published.assert_published("whoami.lobby", data={"user": "alice", "said": "hi"})


@pytest.mark.django_db(transaction=True)
async def test_a_model_feed(tidings_published):
    ann = await User.objects.acreate(username="ann")
    async with connect(user=ann) as client:
        feed = await client.subscribe("chat.messages")
        await client.publish("chat.say", {"text": "hello"})
        assert (await feed.get(timeout=5)).data["data"]["text"] == "hello"
    assert await ChatMessage.objects.acount() == 1
    tidings_published.assert_published("chat.messages", event="create")
