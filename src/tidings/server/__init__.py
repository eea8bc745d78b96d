"""The asyncio side of one tidings process: the node (composition root), the hub
(local fan-out), the subscriber every transport feeds from, the presence tracker and
the WebSocket writer."""
