"""Vocabulary shared by every layer: wire types and statuses (``types``), errors
(``errors``), secret redaction (``redact``), the version, and the local home
folder's small files (``home``). Imports nothing else of ``arkor_nb``.
"""
