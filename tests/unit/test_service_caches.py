"""Small pieces of the service that decide who holds what: the verified-token cache and
the lock's test for a dead holder."""
import subprocess
import sys
import time

from orchestrator.api.auth import Principal, VerifiedTokens
from orchestrator.state.lock import _pid_alive


def _principal(name: str) -> Principal:
    return Principal(subject=name, issuer="https://issuer.test",
                     owner=f"{name}@https://issuer.test", groups=frozenset(), admin=False)


def test_a_verified_token_is_remembered_until_the_earlier_of_ttl_and_expiry():
    cache = VerifiedTokens(ttl_s=60)
    alice = _principal("alice")
    cache.put("token-a", alice, time.time() + 0.3)  # expires before the ttl
    cache.put("token-b", _principal("bob"), time.time() + 3600)
    assert cache.get("token-a") is alice
    time.sleep(0.4)
    assert cache.get("token-a") is None  # never past the token's exp
    assert cache.get("token-b").subject == "bob"
    cache.put("token-c", alice, time.time() - 1)  # already expired: not kept
    assert cache.get("token-c") is None


def test_the_cache_keeps_at_most_max_entries_dropping_the_oldest():
    cache = VerifiedTokens(ttl_s=60, max_entries=2)
    for name in ("a", "b", "c"):
        cache.put(f"token-{name}", _principal(name), time.time() + 600)
    assert cache.get("token-a") is None
    assert [cache.get(f"token-{n}").subject for n in ("b", "c")] == ["b", "c"]


def test_an_exited_unreaped_holder_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert _pid_alive(child.pid) or child.poll() is not None
    deadline = time.time() + 10
    while _pid_alive(child.pid):  # it exits, stays a zombie (not waited for) and is dead
        assert time.time() < deadline, "an exited child still counts as a live holder"
        time.sleep(0.05)
    child.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert _pid_alive(running.pid)
    finally:
        running.kill()
        running.wait()
