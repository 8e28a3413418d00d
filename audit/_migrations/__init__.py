"""Versioned, explicit schema migrations for the audit stores (one SQL file per step).

Files are named ``NNNN_name.sql`` under ``sqlite/`` and ``postgres/``; each runs once,
in order, in its own transaction, and is recorded in ``audit_schema_migrations``.
"""
