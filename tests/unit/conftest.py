import pytest


@pytest.fixture(autouse=True)
def _no_docker_host_from_the_environment(monkeypatch):
    """The program reads DOCKER_HOST like the Docker provider does: keep tests hermetic."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
