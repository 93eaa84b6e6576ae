"""Shared test configuration: hypothesis profiles (CI runs the same profile as local)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("default")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (``CI`` set) every test must run: a skip means a missing install step, so it fails the
    run instead of hiding it. Locally, tests of optional extras may skip."""
    import os

    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        reporter.write_line(
            f"CI: {len(skipped)} test(s) skipped; every extra must be installed in CI", red=True
        )
        session.exitstatus = 1
