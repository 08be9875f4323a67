"""The ranker tests' tiny artefacts, for running the real app in the report tests."""

from tests.recommender_client.conftest import artifacts, artifacts_dir, contract  # noqa: F401
