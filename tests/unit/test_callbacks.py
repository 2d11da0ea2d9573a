"""Which callback URLs the service may POST to (orchestrator.api.callbacks), and the
worker's check before each POST."""
from __future__ import annotations

import socket

from orchestrator.api import callbacks
from orchestrator.api.workers import notify
from orchestrator.state import Store
from tests.fakes.callback_receiver import CallbackReceiver


def resolver(*addresses):
    """A getaddrinfo stand-in answering ``addresses`` for any name (no DNS here)."""
    def resolve(host, port, type=0):  # noqa: A002 - getaddrinfo's own keyword
        family = socket.AF_INET6 if ":" in addresses[0] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]
    return resolve


def test_public_hosts_pass_and_internal_addresses_are_refused_without_a_list():
    assert callbacks.refusal("https://ci.example.org/hook", resolve=resolver("93.184.216.34")) \
        is None
    assert callbacks.refusal("http://8.8.8.8/hook") is None  # an address: no DNS involved
    for url, address in (("http://127.0.0.1:8080/x", "127.0.0.1"),
                         ("http://[::1]/x", "::1"),
                         ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
                         ("http://10.1.2.3/x", "10.1.2.3"),
                         ("http://192.168.0.7/x", "192.168.0.7")):
        why = callbacks.refusal(url)
        assert why is not None and address in why and "ORCHESTRATOR_CALLBACK_HOSTS" in why
    # a public name with one internal address among its answers is refused
    why = callbacks.refusal("http://mixed.example.org/",
                            resolve=resolver("93.184.216.34", "10.0.0.5"))
    assert "10.0.0.5" in why
    assert "127.0.0.1" in callbacks.refusal("http://localhost:9/hook")  # real resolution


def test_bad_urls_and_unresolvable_names_are_refused():
    assert "http(s)" in callbacks.refusal("ftp://example.org/x")
    assert "http(s)" in callbacks.refusal("http:///nohost")
    assert "not a valid URL" in callbacks.refusal("http://example.org:99999/x")

    def fails(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")
    assert "does not resolve" in callbacks.refusal("http://nowhere.invalid/", resolve=fails)


def test_with_a_list_only_listed_hosts_pass():
    allowed = ("ci.example.org", "*.hooks.example.net", "10.0.0.0/8", "127.0.0.1")
    assert callbacks.refusal("https://CI.example.org./hook", allowed) is None
    assert callbacks.refusal("https://a.b.hooks.example.net/x", allowed) is None
    assert callbacks.refusal("http://10.20.30.40:8080/x", allowed) is None
    assert callbacks.refusal("http://127.0.0.1:5000/x", allowed) is None
    for url in ("https://example.org/x", "https://hooks.example.net.evil.org/x",
                "http://11.0.0.1/x", "http://localhost:5000/x"):
        assert "not one of the allowed callback hosts" in callbacks.refusal(url, allowed)


def test_the_worker_checks_again_before_posting(tmp_path):
    receiver = CallbackReceiver()
    try:
        with Store(f"sqlite:///{tmp_path / 'state.db'}") as store:
            dep = store.create_deployment("d")
            item = store.enqueue_work(dep.id, "deploy", callback_url=receiver.url)
            notify(store, item)  # no list: a loopback callback is not sent
            assert receiver.paths == []
            events = [e for e in store.events(dep.id) if e.kind == "callback-refused"]
            assert len(events) == 1 and "127.0.0.1" in events[0].message
            notify(store, item, ("127.0.0.1",))  # listed: sent
            assert receiver.paths == ["/hook"]
    finally:
        receiver.close()
