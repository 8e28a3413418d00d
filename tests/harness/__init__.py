"""Harnesses that start real components (Kubernetes, PostgreSQL, Chromium, ...) for tests."""
