"""A loopback OpenNebula front end, for tests: a PROTOCOL TEST DOUBLE, not support for a
real cloud.

It speaks OpenNebula's XML-RPC API over HTTP on 127.0.0.1 (stdlib ``xmlrpc.server`` in a
thread) for the ``one.*`` calls the opennebula provider makes, following OpenNebula's
XML-RPC reference: the session string ``user:password`` is the first argument of every
call, every reply is ``[success, value-or-error-message, error-code]`` with OpenNebula's
error codes, and objects come back as the XML bodies OpenNebula returns (``<VM>`` from
one.vm.info, the short ``<VM>`` bodies of one.vmpool.info, ``<USER>`` with VM_QUOTA and
DEFAULT_USER_QUOTAS, ``<IMAGE_POOL>``, ``<VNET_POOL>``). Templates sent to one.vm.allocate
are parsed from OpenNebula's template syntax; attributes OpenNebula keeps in the VM
TEMPLATE go there, the rest into USER_TEMPLATE.

VMs move through STATE / LCM_STATE over time (PENDING -> ACTIVE/PROLOG -> ACTIVE/BOOT ->
ACTIVE/RUNNING; terminate-hard -> ACTIVE/SHUTDOWN -> DONE), leases come from the
networks' address ranges, quotas are enforced at allocation. Faults can be injected: a VM
whose name matches ends in a FAILURE LCM state with an ERROR message, calls fail with HTTP
503 or OpenNebula's INTERNAL error a number of times. Nothing boots: there is no
hypervisor and no contextualisation behind it.

Images, datastores and disk hot-plug (one.image.*, one.imagepool.info,
one.datastorepool.info, one.vm.attach, one.vm.detach) live in tests/one_images.py.

Run it alone with ``python -m tests.one_server [PORT]`` (user oneadmin, password
``opennebula``).
"""
from __future__ import annotations

import itertools
import threading
import time
import xmlrpc.client
from http import HTTPStatus
from socketserver import ThreadingMixIn
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from tests.one_images import ImageMethods
from tests.one_xml import Fault, parse_template, user_xml, vm_xml, vnet_xml

# OpenNebula's error codes (RequestManager's ErrorCode)
AUTHENTICATION, AUTHORIZATION, NO_EXISTS, ACTION, XML_RPC_API, INTERNAL = \
    0x0100, 0x0200, 0x0400, 0x0800, 0x1000, 0x2000
# VM STATE / LCM_STATE numbers used here
PENDING, HOLD, ACTIVE, DONE, POWEROFF = 1, 2, 3, 6, 8
LCM = {"LCM_INIT": 0, "PROLOG": 1, "BOOT": 2, "RUNNING": 3, "SHUTDOWN": 12,
       "HOTPLUG": 17, "SHUTDOWN_POWEROFF": 18, "BOOT_POWEROFF": 20, "UNKNOWN": 16,
       "BOOT_FAILURE": 36, "PROLOG_FAILURE": 39}
#: attributes OpenNebula keeps in a VM's TEMPLATE; everything else goes to USER_TEMPLATE
TEMPLATE_ATTRIBUTES = {"NAME", "CPU", "VCPU", "MEMORY", "DISK", "NIC", "NIC_ALIAS", "PCI",
                       "CONTEXT", "OS", "GRAPHICS", "INPUT", "FEATURES", "RAW", "CPU_MODEL",
                       "NUMA_NODE", "TOPOLOGY", "MEMORY_MAX", "VCPU_MAX", "VMGROUP"}
UNLIMITED, DEFAULT = -2, -1
FAILURES = {LCM["BOOT_FAILURE"], LCM["PROLOG_FAILURE"]}


class FakeOpenNebula(ImageMethods):
    """The cloud's state plus the XML-RPC methods. ``start()`` -> endpoint URL."""

    def __init__(self, password: str = "opennebula", user: str = "oneadmin",
                 images: dict | None = None, networks: dict | None = None,
                 quota: dict | None = None, timings: dict | None = None,
                 datastores: dict | None = None):
        self.users = {user: (2, password)}
        self._setup_images(images or {0: {"NAME": "ubuntu-22.04", "SIZE": 2252},
                                      1: {"NAME": "debian-12", "SIZE": 2048}}, datastores)
        self.networks = networks or {0: {"NAME": "private", "BASE": "10.10.0."},
                                     1: {"NAME": "public", "BASE": "198.51.100."}}
        self.quota = {"VMS": UNLIMITED, "CPU": UNLIMITED, "MEMORY": UNLIMITED, **(quota or {})}
        self.timings = {"pending": 0.1, "prolog": 0.1, "boot": 0.1, "shutdown": 0.05,
                        "hotplug": 0.1, "image_init": 0.05, "image_mkfs": 0.2,
                        "image_delete": 0.1, **(timings or {})}
        self.vms: dict[int, dict] = {}
        self.failing: list[dict] = []  # {"name": substring, "lcm": "BOOT_FAILURE", "error"}
        self.call_faults: list[dict] = []  # {"method", "times", "kind": http503|internal}
        self.calls: list[str] = []
        #: method -> callable(number of successful calls so far), run after a call succeeded
        self.after_call: dict = {}
        self._ids = itertools.count(100)
        self._lock = threading.RLock()
        self._done: dict[str, int] = {}
        self._server = None

    # --- server plumbing -------------------------------------------------------------------
    def start(self, port: int = 0) -> str:
        fake = self

        class Handler(SimpleXMLRPCRequestHandler):
            rpc_paths = ("/RPC2",)

            def do_POST(self):
                for fault in fake.call_faults:
                    if fault["kind"] == "http503" and fault["times"] > 0:
                        fault["times"] -= 1
                        fake.calls.append(fault.get("method", "*") + ":503")
                        self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "front end restarting")
                        return
                super().do_POST()

            def log_message(self, *args):
                pass

        class Server(ThreadingMixIn, SimpleXMLRPCServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", port), requestHandler=Handler, logRequests=False,
                              allow_none=False)
        self._server.register_instance(self, allow_dotted_names=False)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/RPC2"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _dispatch(self, method: str, params: tuple):
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if not method.startswith("one.") or handler is None:
            raise xmlrpc.client.Fault(-506, f"Method '{method}' not defined")
        self.calls.append(method)
        if not params or not isinstance(params[0], str):
            raise xmlrpc.client.Fault(-501, "Type mismatch: session string expected")
        try:
            with self._lock:
                self._inject(method)
                uid = self._authenticate(method, params[0])
                value = handler(uid, *params[1:])
                done = self._done.get(method, 0) + 1
                self._done[method] = done
            if method in self.after_call:
                self.after_call[method](done)
            return [True, value, 0]
        except Fault as exc:
            return [False, f"[{method}] {exc}", exc.code]
        except TypeError as exc:
            raise xmlrpc.client.Fault(-501, f"Type mismatch or wrong arity: {exc}") from None

    def _inject(self, method: str) -> None:
        for fault in self.call_faults:
            if fault["kind"] == "internal" and fault["times"] > 0 and \
                    fault.get("method") in (None, method):
                fault["times"] -= 1
                raise Fault("Internal error: database is locked", INTERNAL)

    def _authenticate(self, method: str, session: str) -> int:
        user, _, password = session.partition(":")
        known = self.users.get(user)
        if known is None or known[1] != password:
            raise Fault("User couldn't be authenticated, aborting call.", AUTHENTICATION)
        return known[0]

    # --- VM life cycle over time -----------------------------------------------------------
    def _state(self, vm: dict) -> tuple[int, int]:
        now = time.monotonic()
        for effect in [e for e in vm.get("effects", ()) if e[0] <= now]:
            vm["effects"].remove(effect)  # what completes with a transition (a detach)
            effect[1]()
        current = vm["timeline"][0][1:]
        for at, state, lcm in vm["timeline"]:
            if at <= now:
                current = (state, lcm)
        if current[0] == DONE and not vm.get("released"):
            self._release(vm)
        if current[0] == ACTIVE and current[1] in FAILURES and vm.get("error"):
            vm["user_template"]["ERROR"] = vm.pop("error")  # as oned records a failure
        return current

    def _schedule(self, vm: dict, *steps: tuple[float, int, int]) -> None:
        now, offset = time.monotonic(), 0.0
        vm["timeline"] = []
        for delay, state, lcm in steps:
            offset += delay
            vm["timeline"].append((now + offset, state, lcm))

    def _boot_steps(self, vm: dict) -> list[tuple[float, int, int]]:
        t = self.timings
        failure = next((f for f in self.failing if f["name"] in vm["name"]), None)
        if failure and failure.get("lcm") == "PROLOG_FAILURE":
            return [(0, PENDING, 0), (t["pending"], ACTIVE, LCM["PROLOG"]),
                    (t["prolog"], ACTIVE, LCM["PROLOG_FAILURE"])]
        steps = [(0, PENDING, 0), (t["pending"], ACTIVE, LCM["PROLOG"]),
                 (t["prolog"], ACTIVE, LCM["BOOT"])]
        if failure:
            return steps + [(t["boot"], ACTIVE, LCM[failure.get("lcm", "BOOT_FAILURE")])]
        return steps + [(t["boot"], ACTIVE, LCM["RUNNING"])]

    def _release(self, vm: dict) -> None:
        vm["released"] = True
        vm["etime"] = int(time.time())
        self._release_images(vm)

    def _vm(self, uid: int, vm_id: int) -> dict:
        vm = self.vms.get(vm_id)
        if vm is None or self._state(vm)[0] == DONE and vm.get("purged"):
            raise Fault(f"Error getting virtual machine [{vm_id}].", NO_EXISTS)
        if vm["uid"] != uid:
            raise Fault(f"User [{uid}] : Not authorized to perform USE VM [{vm_id}].",
                        AUTHORIZATION)
        return vm

    def usage(self, uid: int) -> dict:
        used = {"VMS": 0, "CPU": 0.0, "MEMORY": 0}
        for vm in self.vms.values():
            if vm["uid"] == uid and self._state(vm)[0] != DONE:
                used["VMS"] += 1
                used["CPU"] += float(vm["template"].get("CPU", 0))
                used["MEMORY"] += int(vm["template"].get("MEMORY", 0))
        return used

    def _check_quota(self, uid: int, template: dict) -> None:
        used = self.usage(uid)
        asked = {"VMS": 1, "CPU": float(template.get("CPU", 0)),
                 "MEMORY": int(template.get("MEMORY", 0))}
        user = next(name for name, (i, _) in self.users.items() if i == uid)
        for metric, amount in asked.items():
            limit = self.quota.get(metric, UNLIMITED)
            if limit not in (UNLIMITED, DEFAULT) and used[metric] + amount > limit:
                raise Fault(f"User [{uid}] : limit of {limit:g} reached for {metric} quota in "
                            f"user [{user}].", AUTHORIZATION)

    def _lease(self, network_id: int) -> str:
        net = self.networks[network_id]
        taken = {nic.get("IP") for vm in self.vms.values() if not vm.get("released")
                 for nic in vm["template"].get("NIC", [])}
        return next(net["BASE"] + str(i) for i in range(10, 250)
                    if net["BASE"] + str(i) not in taken)

    # --- one.* methods (the session argument is consumed by _dispatch) ---------------------
    def m_one_system_version(self, uid):
        return "6.10.0"

    def m_one_user_info(self, uid, user_id, decrypt=False):
        if user_id not in (-1, uid):
            raise Fault(f"Error getting user [{user_id}].", NO_EXISTS)
        name = next(n for n, (i, _) in self.users.items() if i == uid)
        return user_xml(uid, name, self.quota, self.usage(uid), self.datastore_quota,
                        self.datastore_usage(uid))

    def m_one_vnpool_info(self, uid, flag, start, end):
        return "<VNET_POOL>" + "".join(vnet_xml(i, net) for i, net in self.networks.items()
                                       if _in_range(i, start, end)) + "</VNET_POOL>"

    def m_one_vm_allocate(self, uid, text, hold=False):
        template = parse_template(text)
        for key in ("CPU", "MEMORY"):
            if key not in template or float(template[key]) <= 0:
                raise Fault(f"Error allocating a new virtual machine template. "
                            f"{key} attribute must be a positive number", ACTION)
        self._check_quota(uid, template)
        vm_id = next(self._ids)
        for disk_id, disk in enumerate(template.get("DISK", [])):
            image_id = int(disk.get("IMAGE_ID", -1))
            if image_id not in self.images:
                raise Fault(f"Error allocating a new virtual machine template. Error getting "
                            f"image [{image_id}].", ACTION)
            disk.update({"DISK_ID": str(disk_id), "IMAGE": self.images[image_id]["NAME"],
                         "SIZE": disk.get("SIZE") or str(self.images[image_id]["SIZE"]),
                         "TARGET": "vd" + "abcdefgh"[disk_id]})
        for nic_id, nic in enumerate(template.get("NIC", [])):
            network_id = int(nic.get("NETWORK_ID", -1))
            if network_id not in self.networks:
                raise Fault(f"Error allocating a new virtual machine template. Error getting "
                            f"virtual network [{network_id}].", ACTION)
            nic.update({"NIC_ID": str(nic_id), "NETWORK": self.networks[network_id]["NAME"],
                        "IP": self._lease(network_id),
                        "MAC": f"02:00:0a:0a:{vm_id % 256:02x}:{nic_id:02x}"})
        name = template.pop("NAME", f"one-{vm_id}")
        user = {k: v for k, v in template.items() if k not in TEMPLATE_ATTRIBUTES}
        vm = {"id": vm_id, "uid": uid, "name": name, "stime": int(time.time()), "etime": 0,
              "template": {k: v for k, v in template.items() if k in TEMPLATE_ATTRIBUTES},
              "user_template": user}
        vm["template"]["VMID"] = str(vm_id)
        self.vms[vm_id] = vm
        failure = next((f for f in self.failing if f["name"] in name), None)
        if failure:
            vm["error"] = f"{time.ctime()}: {failure.get('error', 'Error deploying the VM')}"
        if hold:
            self._schedule(vm, (0, HOLD, 0))
        else:
            self._schedule(vm, *self._boot_steps(vm))
        return vm_id

    def m_one_vm_info(self, uid, vm_id, decrypt=False):
        vm = self._vm(uid, vm_id)
        return vm_xml(vm, *self._state(vm), short=False)

    def m_one_vmpool_info(self, uid, flag, start, end, state, query=""):
        if flag not in (-4, -3, -2, -1) and flag != uid:
            raise Fault("Incorrect filter flag", XML_RPC_API)
        found = []
        for vm_id, vm in sorted(self.vms.items()):
            current = self._state(vm)
            if not _in_range(vm_id, start, end) or (flag == -3 and vm["uid"] != uid):
                continue
            if (state == -1 and current[0] == DONE) or (state >= 0 and current[0] != state):
                continue
            if query and not _matches(vm, query):
                continue
            found.append(vm_xml(vm, *current, short=True))
        return "<VM_POOL>" + "".join(found) + "</VM_POOL>"

    def m_one_vm_action(self, uid, action, vm_id):
        vm = self._vm(uid, vm_id)
        state, lcm = self._state(vm)
        running = state == ACTIVE and lcm == LCM["RUNNING"]
        t = self.timings
        if state == DONE:
            raise Fault(f"Error performing action \"{action}\": This action is not available "
                        "for state DONE", ACTION)
        if action in ("terminate", "terminate-hard"):
            if action == "terminate" and not running and state not in (POWEROFF,):
                raise Fault(f"Error performing action \"{action}\" on virtual machine "
                            f"[{vm_id}]. This action is not available for state "
                            f"{_shown(state, lcm)}", ACTION)
            steps = [(0, ACTIVE, LCM["SHUTDOWN"]), (t["shutdown"], DONE, 0)] \
                if state == ACTIVE else [(0, DONE, 0)]
            self._schedule(vm, *steps)
        elif action in ("poweroff", "poweroff-hard") and running:
            self._schedule(vm, (0, ACTIVE, LCM["SHUTDOWN_POWEROFF"]),
                           (t["shutdown"], POWEROFF, 0))
        elif action == "resume" and state == POWEROFF:
            self._schedule(vm, (0, ACTIVE, LCM["BOOT_POWEROFF"]),
                           (t["boot"], ACTIVE, LCM["RUNNING"]))
        elif action == "release" and state == HOLD:
            self._schedule(vm, *self._boot_steps(vm))
        else:
            raise Fault(f"Error performing action \"{action}\" on virtual machine [{vm_id}]. "
                        f"This action is not available for state {_shown(state, lcm)}", ACTION)
        return vm_id

    def m_one_vm_resize(self, uid, vm_id, text, enforce):
        vm = self._vm(uid, vm_id)
        state, lcm = self._state(vm)
        if state not in (PENDING, HOLD, POWEROFF):
            raise Fault(f"Error performing action \"resize\": This action is not available "
                        f"for state {_shown(state, lcm)}", ACTION)
        changes = parse_template(text)
        grow = {"VMS": 0, "CPU": float(changes.get("CPU", 0)) -
                float(vm["template"].get("CPU", 0)),
                "MEMORY": int(changes.get("MEMORY", 0)) - int(vm["template"].get("MEMORY", 0))}
        self._check_quota(uid, {k: max(v, 0) for k, v in grow.items() if k != "VMS"}) \
            if enforce else None
        vm["template"].update({k: v for k, v in changes.items() if k in ("CPU", "VCPU",
                                                                        "MEMORY")})
        return vm_id

    # --- helpers for tests -----------------------------------------------------------------
    def live_vms(self) -> list[dict]:
        """VMs not DONE, with their state, as plain records."""
        with self._lock:
            return [{"id": i, "name": vm["name"], "state": self._state(vm),
                     "user_template": dict(vm["user_template"]),
                     "template": vm["template"]}
                    for i, vm in self.vms.items() if self._state(vm)[0] != DONE]

    def _shown_state(self, state: int, lcm: int) -> str:
        return _shown(state, lcm)

    def set_state(self, vm_id: int, state: int, lcm: int = 0, error: str | None = None):
        with self._lock:
            vm = self.vms[vm_id]
            self._schedule(vm, (0, state, lcm))
            if error:
                vm["user_template"]["ERROR"] = error


def _in_range(item: int, start: int, end: int) -> bool:
    return (start < 0 or item >= start) and (end < 0 or item <= end)


def _matches(vm: dict, query: str) -> bool:
    key, _, value = query.partition("=")
    path = key.split(".")
    if path[:2] == ["VM", "NAME"]:
        return vm["name"] == value
    if path[:2] == ["VM", "USER_TEMPLATE"] and len(path) == 3:
        return str(vm["user_template"].get(path[2])) == value
    return False


def _shown(state: int, lcm: int) -> str:
    names = {PENDING: "PENDING", HOLD: "HOLD", DONE: "DONE", POWEROFF: "POWEROFF"}
    if state == ACTIVE:
        return next((k for k, v in LCM.items() if v == lcm), str(lcm))
    return names.get(state, str(state))


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys

    server = FakeOpenNebula()
    print(server.start(int(sys.argv[1]) if len(sys.argv) > 1 else 2633), flush=True)
    threading.Event().wait()
