"""An app's tests written with tidings.testing, as docs/testing.md shows them; run by
tests/test_testing_kit.py with Django's test runner (``manage.py test``)."""

from asgiref.sync import async_to_sync
from demo.chat.models import ChatMessage
from django.contrib.auth.models import User
from django.test import TestCase, TransactionTestCase

import tidings
from tidings.client import ClientError
from tidings.testing import capture, connect, poll, stream


class HandlerAndRuleTests(TestCase):
    """In a TestCase: the user made in the test's transaction is who the client is."""

    @classmethod
    def setUpTestData(cls):
        cls.alice = User.objects.create_user("alice")

    async def test_a_handler_answers_as_the_user(self):
        async with connect(user=self.alice) as client:
            sub = await client.subscribe("whoami.lobby")
            await client.publish("whoami.lobby", "hi")
            message = await sub.get(timeout=5)
        self.assertEqual(message.data, {"user": "alice", "said": "hi"})

    async def test_a_rule_refuses_anonymous_users(self):
        async with connect() as anonymous, connect(user=self.alice) as alice:
            with self.assertRaises(ClientError) as refused:
                await anonymous.subscribe("members.lounge")
            self.assertEqual(refused.exception.code, "forbidden")
            await alice.subscribe("members.lounge")  # a logged-in user may

    async def test_sse_and_long_poll_in_process(self):
        position = str(await tidings.apublish("test.kit-sse", {"n": 1}))
        async with stream("test.kit-sse", user=self.alice, since="0:0") as events:
            opened = await events.next()
            replayed = await events.next()
        self.assertTrue(opened["data"]["topics"]["test.kit-sse"]["recovered"])
        self.assertEqual((replayed["event"], replayed["data"]), ("message", {"n": 1}))
        answer = await poll("test.kit-sse", since=position)
        self.assertEqual((answer["status"], answer["messages"]), (200, []))
        with self.assertRaises(AssertionError) as refused:
            async with stream("deny.kit"):
                pass
        self.assertIn("forbidden", str(refused.exception))

    def test_a_view_publishes_after_its_commit(self):
        body = {"topic": "test.kit-view", "n": 2, "transaction": "commit"}
        with capture() as published, self.captureOnCommitCallbacks(execute=True):
            response = self.client.post("/test/publish", body, content_type="application/json")
        self.assertEqual(response.status_code, 200)
        self.assertEqual([p.data["i"] for p in published.on("test.kit-view")], [0, 1])
        published.assert_published("test.kit-view")
        with self.assertRaises(AssertionError) as missing:
            published.assert_published("test.kit-view", data={"i": 7})
        self.assertIn("test.kit-view message: {'i': 0", str(missing.exception))

    def test_a_sync_test_drives_an_async_client(self):
        async def say() -> object:
            async with connect(user=self.alice) as client:
                sub = await client.subscribe("whoami.sync")
                await client.publish("whoami.sync", "from a sync test")
                return (await sub.get(timeout=5)).data

        self.assertEqual(async_to_sync(say)()["said"], "from a sync test")


class FeedTests(TransactionTestCase):
    """A model feed publishes on commit: a TransactionTestCase commits."""

    async def test_a_chat_message_is_saved_and_fed_to_everyone(self):
        ann = await User.objects.acreate(username="ann")
        async with connect(user=ann) as client:
            feed = await client.subscribe("chat.messages")
            with capture() as published:
                await client.publish("chat.say", {"text": " hello "})  # the handler saves it
                message = await feed.get(timeout=5)
        self.assertEqual((message.event, message.data["data"]["text"]), ("create", "hello"))
        self.assertEqual(await ChatMessage.objects.acount(), 1)
        published.assert_not_published("chat.say")  # the handler broadcasts nothing
        published.assert_published("chat.messages", event="create")
