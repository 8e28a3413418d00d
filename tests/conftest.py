"""Root test configuration: the fixture plugins of each real-component harness.

A harness whose component is missing makes its tests FAIL with a message saying
what to install (``make setup`` installs everything); nothing is skipped silently.
"""

from hypothesis import HealthCheck, settings

pytest_plugins: list[str] = [
    # one line per harness module, e.g. "tests.harness.kube_fixtures"
    "tests.harness.kube_fixtures",
    "tests.harness.browser",
    "tests.harness.postgres_fixtures",
]

# Property tests never fail on time: no per-example deadline, and no "too slow" health
# check (data generation measured against a wall-clock budget), which a loaded machine
# trips. Each test's own @settings inherits this profile.
settings.register_profile("enclave", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("enclave")
