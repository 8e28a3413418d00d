"""Root test configuration: the fixture plugins of each real-component harness.

A harness whose component is missing makes its tests FAIL with a message saying
what to install (``make setup`` installs everything); nothing is skipped silently.
"""

pytest_plugins: list[str] = [
    # one line per harness module, e.g. "tests.harness.kube_fixtures"
    "tests.harness.kube_fixtures",
]
