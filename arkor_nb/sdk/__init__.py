"""The SDK: talks to a backend (the Arkor cloud or the local server) over HTTP.

``client`` (httpx), ``stream`` (SSE with reconnects), ``trainer`` (the
``Trainer``), ``callbacks``, ``infer`` (``ctx.infer``), ``config``
(``create_trainer`` keywords -> wire config), ``backends`` (cloud/local),
``local_server`` (find or start the local server), ``jobs`` and ``chat``
(beyond one trainer), ``runner`` (trainer files), ``credentials``, ``state``,
``abort``, ``sync`` (the private event-loop thread). Imports ``core`` only.
"""
