import jax
import pytest


@pytest.fixture
def key():
    """A fresh key per test, from the test's name, so tests draw independent inputs."""
    import os
    import zlib

    return jax.random.key(zlib.crc32(os.environ.get("PYTEST_CURRENT_TEST", "").encode()))
