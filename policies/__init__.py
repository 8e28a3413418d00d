"""The tier catalog: what each security tier must enforce, and why.

Data files plus pure decision functions; read by ``audit``, ``auth`` and
``controller`` so that a tier's rules live in exactly one place. This package
imports nothing of ours and performs no I/O beyond reading its own catalog files.
"""
