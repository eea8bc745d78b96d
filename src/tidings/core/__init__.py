"""tidings' sans-I/O core: topics, positions and messages, the protocol, the session,
presence state and the per-subscriber queue.

Nothing in this package imports asyncio, Django or a socket library, or anything of
tidings outside it but :mod:`tidings.exceptions`: it is driven by :mod:`tidings.server`
and the transports, and tested by feeding it values (tests/core/).
"""
