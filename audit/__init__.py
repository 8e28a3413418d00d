"""The tamper-evident audit log: store, RFC 9162 Merkle tree, signed checkpoints.

Called by every other component through its client API; only this package writes
the audit store. It must never update or delete an entry once acknowledged.
"""
