"""Fixtures shared by integration test modules."""
import pytest

from tests.one_server import FakeOpenNebula

#: the password of the OpenNebula test double's user (never a real credential)
ONE_PASSWORD = "s3cret-one-pass"


@pytest.fixture
def one():
    """The OpenNebula XML-RPC test double, started on 127.0.0.1."""
    server = FakeOpenNebula(password=ONE_PASSWORD)
    server.endpoint = server.start()
    yield server
    server.stop()


@pytest.fixture
def auth_file(tmp_path):
    """A one_auth file for the test double's user."""
    path = tmp_path / "one_auth"
    path.write_text(f"oneadmin:{ONE_PASSWORD}\n")
    return path
