"""Embedded local backend: an Arkor-compatible HTTP/SSE server on 127.0.0.1.

Modules: ``app`` (routes), ``store`` (SQLite jobs + event log), ``jobs``
(queue and worker processes), ``worker_protocol`` (the workers' stdio
protocol, both ends), ``sse`` (event streams), ``security`` (token, Host and
Origin checks), ``request_timeouts`` (half-sent requests), ``launch`` (the
server's process), ``chat`` (inference endpoints), ``synthetic_worker``
(model-free event source), and
the training side: ``worker``, ``config``, ``models``, ``datasets``,
``inference``. Nothing is imported eagerly: the server's dependencies are
the optional ``[local]`` extra.
"""
