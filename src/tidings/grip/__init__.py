"""Running behind Pushpin (GRIP): the same views and endpoints, the proxy holds the
connections.

With ``TIDINGS["GRIP"]`` set, a request that came through the proxy (its ``Grip-Sig``
verifies against the proxy's key: :mod:`~tidings.grip.signature`) is answered with GRIP
instructions instead of being held in this process (:mod:`~tidings.grip.instructions`):

- :func:`tidings.hold_stream` answers with a ``Grip-Link`` to tidings' own
  ``PATH + "grip/stream"``, which Pushpin follows at once: that answer replays what the
  client missed, then ``Grip-Hold: stream`` on the topic's channel, ``prev-id`` = its
  position, ``Grip-Keep-Alive`` and a new next link (for recovery).
- :func:`tidings.hold_longpoll` answers at once from history, or ``Grip-Hold: response``
  with ``prev-id``, ``Grip-Timeout`` and the timeout response (a 304 travels as
  ``Grip-Status``).
- :func:`tidings.hold_websocket` answers a WebSocket-over-HTTP request: ``OPEN`` and a
  ``subscribe`` control message per topic.
- ``/realtime/sse`` and ``/realtime/poll`` answer with their usual bodies plus hold
  instructions on the protocol channels; ``/realtime/ws`` speaks the tidings protocol
  over WebSocket-over-HTTP (:mod:`~tidings.grip.ws_over_http`).

Each of these drives the same session as the in-process transports, through a
:class:`~tidings.grip.subscriber.ProxySubscriber`: a subscriber whose topics the proxy
holds. Every publish is also sent to each proxy (:mod:`~tidings.grip.publisher`);
Pushpin notices a missed one by its ``prev-id`` and recovers through the next link
(streams, with ``Grip-Last``) or by retrying the request (long-polls), both answered
from tidings' history.

The wire format uses gripcontrol (formats, items, WebSocket events, control messages)
and pubcontrol (the publishing client: one background thread per process, in order).
``Grip-Sig`` is verified with PyJWT directly, HS256 only, ``exp`` required.
"""
