from tests.report.conftest import trained_run  # noqa: F401  (the shared tiny run)
