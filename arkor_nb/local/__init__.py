"""Embedded local backend: an Arkor-compatible HTTP/SSE server that really trains.

Layers (imports point down; ``local`` imports ``core`` and never ``sdk`` or
``notebook``):

- ``server/``: the ASGI app and its routes (``app``, ``chat``), the SQLite job
  store and event log (``store``), event streams (``sse``), the job queue and
  worker processes (``jobs``), token/Host/Origin checks (``security``),
  half-sent requests (``request_timeouts``), idle shutdown (``idle``) and the
  server's process (``launch``, ``serve``);
- ``training/``: the worker process (``worker``: plan -> ``Trainer``,
  ``callback``, ``sampler``), its stdio protocol (``worker_protocol``), the
  model-free ``synthetic_worker``, models (``models``, ``gguf_cache``) and
  in-memory generation (``inference``);
- ``data/``: rows (``rows``), where they come from (``sources``) and their
  tokens (``tokenize``);
- ``config`` validates a job's config, with ``sandbox`` (which files a job
  may read) and ``model_check`` (which models it may load).

Nothing heavy is imported eagerly: the server's dependencies are the
optional ``[local]`` extra.
"""
