"""XML bodies of the loopback OpenNebula front end (tests/one_server.py), shaped as
OpenNebula returns them: text values in CDATA inside TEMPLATE / USER_TEMPLATE, numbers as
plain text, vector attributes as nested elements, repeated elements for lists; and the
parser of OpenNebula's template syntax the front end reads templates with."""
from __future__ import annotations

import re
import time

XML_RPC_API = 0x1000

PERMISSIONS = ("<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>"
               "<GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U>"
               "<OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>")
#: TEMPLATE attributes the short VM body of one.vmpool.info keeps
SHORT_TEMPLATE = {"CPU", "VCPU", "MEMORY", "NIC", "DISK", "PCI", "GRAPHICS", "VMID"}
SHORT_VECTOR = {"NIC": ("IP", "IP6", "MAC", "NETWORK", "NETWORK_ID", "NIC_ID"),
                "DISK": ("DISK_ID", "IMAGE", "IMAGE_ID", "SIZE", "TARGET"),
                "PCI": ("PCI_ID", "VENDOR", "DEVICE", "CLASS", "ADDRESS")}


def cdata(value: object) -> str:
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def template_xml(tag: str, attributes: dict, short: bool = False) -> str:
    parts = []
    for name, value in attributes.items():
        if short and name not in SHORT_TEMPLATE:
            continue
        for item in (value if isinstance(value, list) else [value]):
            if isinstance(item, dict):
                keep = SHORT_VECTOR.get(name) if short else None
                inner = "".join(f"<{k}>{cdata(v)}</{k}>" for k, v in item.items()
                                if keep is None or k in keep)
                parts.append(f"<{name}>{inner}</{name}>")
            else:
                parts.append(f"<{name}>{cdata(item)}</{name}>")
    return f"<{tag}>" + "".join(parts) + f"</{tag}>"


def vm_xml(vm: dict, state: int, lcm: int, short: bool) -> str:
    history = ""
    if state not in (1, 2):  # scheduled at least once: one history record
        history = ("<HISTORY><OID>{id}</OID><SEQ>0</SEQ><HOSTNAME>node01</HOSTNAME>"
                   "<HID>0</HID><CID>0</CID><STIME>{stime}</STIME><ETIME>0</ETIME>"
                   "<VM_MAD>{kvm}</VM_MAD><TM_MAD>{tm}</TM_MAD><DS_ID>0</DS_ID>"
                   "<ACTION>0</ACTION></HISTORY>").format(
            id=vm["id"], stime=vm["stime"], kvm=cdata("kvm"), tm=cdata("ssh"))
    body = (f"<VM><ID>{vm['id']}</ID><UID>{vm['uid']}</UID><GID>0</GID>"
            f"<UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>{vm['name']}</NAME>"
            + ("" if short else PERMISSIONS) +
            f"<LAST_POLL>{int(time.time())}</LAST_POLL><STATE>{state}</STATE>"
            f"<LCM_STATE>{lcm}</LCM_STATE><PREV_STATE>{state}</PREV_STATE>"
            f"<PREV_LCM_STATE>{lcm}</PREV_LCM_STATE><RESCHED>0</RESCHED>"
            f"<STIME>{vm['stime']}</STIME><ETIME>{vm['etime']}</ETIME>"
            f"<DEPLOY_ID>{'one-' + str(vm['id']) if history else ''}</DEPLOY_ID>"
            "<MONITORING></MONITORING>"
            + template_xml("TEMPLATE", vm["template"], short)
            + template_xml("USER_TEMPLATE", vm["user_template"])
            + f"<HISTORY_RECORDS>{history}</HISTORY_RECORDS></VM>")
    return body


def _quota_entry(values: dict, used: dict | None) -> str:
    parts = []
    for metric in ("CPU", "MEMORY", "RUNNING_CPU", "RUNNING_MEMORY", "RUNNING_VMS",
                   "SYSTEM_DISK_SIZE", "VMS"):
        limit = values.get(metric, -1)
        parts.append(f"<{metric}>{cdata(f'{limit:g}' if isinstance(limit, float) else limit)}"
                     f"</{metric}>")
        if used is not None:
            parts.append(f"<{metric}_USED>{cdata(f'{used.get(metric, 0):g}')}"
                         f"</{metric}_USED>")
    return "<VM>" + "".join(parts) + "</VM>"


def _datastore_quota(limits: dict, used: dict) -> str:
    """<DATASTORE> entries: one per datastore the user has a quota or images in."""
    parts = []
    for ds_id in sorted(set(limits) | {d for d, u in used.items() if u.get("IMAGES")}):
        entry = {"IMAGES": -1, "SIZE": -1, **limits.get(ds_id, {})}
        parts.append(f"<DATASTORE><ID>{cdata(ds_id)}</ID>"
                     f"<IMAGES>{cdata(entry['IMAGES'])}</IMAGES>"
                     f"<IMAGES_USED>{cdata(used.get(ds_id, {}).get('IMAGES', 0))}</IMAGES_USED>"
                     f"<SIZE>{cdata(entry['SIZE'])}</SIZE>"
                     f"<SIZE_USED>{cdata(used.get(ds_id, {}).get('SIZE', 0))}</SIZE_USED>"
                     "</DATASTORE>")
    return "".join(parts)


def user_xml(uid: int, name: str, quota: dict, used: dict,
             datastore_quota: dict | None = None, datastore_used: dict | None = None) -> str:
    """<USER> with its VM_QUOTA and DATASTORE_QUOTA (limits: -1 the default quota,
    -2 unlimited; datastore SIZE in MiB)."""
    return (f"<USER><ID>{uid}</ID><GID>1</GID><GROUPS><ID>1</ID></GROUPS>"
            f"<GNAME>users</GNAME><NAME>{name}</NAME><PASSWORD>{cdata('*')}</PASSWORD>"
            f"<AUTH_DRIVER>core</AUTH_DRIVER><ENABLED>1</ENABLED><LOGIN_TOKEN></LOGIN_TOKEN>"
            f"<TEMPLATE></TEMPLATE><DATASTORE_QUOTA>"
            f"{_datastore_quota(datastore_quota or {}, datastore_used or {})}</DATASTORE_QUOTA>"
            f"<NETWORK_QUOTA></NETWORK_QUOTA>"
            f"<VM_QUOTA>{_quota_entry(quota, used)}</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>"
            "<DEFAULT_USER_QUOTAS><DATASTORE_QUOTA></DATASTORE_QUOTA>"
            "<NETWORK_QUOTA></NETWORK_QUOTA><VM_QUOTA>"
            + _quota_entry({k: -2 for k in quota}, None)
            + "</VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA></DEFAULT_USER_QUOTAS></USER>")


def image_xml(image_id: int, image: dict, state: int, uname: str, datastore: str) -> str:
    """<IMAGE> as one.image.info and one.imagepool.info return it."""
    vms = "".join(f"<ID>{vm_id}</ID>" for vm_id in sorted(image.get("vms", ())))
    source = f"/var/lib/one/datastores/{image.get('DATASTORE_ID', 1)}/{image_id}"
    return (f"<IMAGE><ID>{image_id}</ID><UID>{image.get('uid', 0)}</UID><GID>0</GID>"
            f"<UNAME>{uname}</UNAME><GNAME>oneadmin</GNAME><NAME>{image['NAME']}</NAME>"
            f"{PERMISSIONS}<TYPE>{image.get('TYPE', 0)}</TYPE><DISK_TYPE>0</DISK_TYPE>"
            f"<PERSISTENT>{image.get('PERSISTENT', 0)}</PERSISTENT>"
            f"<REGTIME>1700000000</REGTIME><SOURCE>{cdata(source)}</SOURCE>"
            f"<PATH>{cdata('')}</PATH><FORMAT>{cdata('qcow2')}</FORMAT>"
            f"<FS>{cdata('')}</FS><SIZE>{image['SIZE']}</SIZE><STATE>{state}</STATE>"
            f"<PREV_STATE>{state}</PREV_STATE>"
            f"<RUNNING_VMS>{len(image.get('vms', ()))}</RUNNING_VMS><CLONING_OPS>0"
            "</CLONING_OPS><CLONING_ID>-1</CLONING_ID><TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT>"
            f"<DATASTORE_ID>{image.get('DATASTORE_ID', 1)}</DATASTORE_ID>"
            f"<DATASTORE>{datastore}</DATASTORE><VMS>{vms}</VMS><CLONES></CLONES>"
            "<APP_CLONES></APP_CLONES>"
            + template_xml("TEMPLATE", image.get("TEMPLATE", {}))
            + "<SNAPSHOTS><ALLOW_ORPHANS>NO</ALLOW_ORPHANS><CURRENT_BASE>-1</CURRENT_BASE>"
              "<NEXT_SNAPSHOT>0</NEXT_SNAPSHOT></SNAPSHOTS></IMAGE>")


def datastore_xml(datastore_id: int, datastore: dict, image_ids: list[int],
                  used_mb: int) -> str:
    """<DATASTORE> as one.datastorepool.info returns it (TYPE 0 image, 1 system, 2 file)."""
    total = int(datastore.get("TOTAL_MB", 0))
    return (f"<DATASTORE><ID>{datastore_id}</ID><UID>0</UID><GID>0</GID>"
            f"<UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>{datastore['NAME']}</NAME>"
            f"{PERMISSIONS}<DS_MAD>{cdata('fs')}</DS_MAD><TM_MAD>{cdata('ssh')}</TM_MAD>"
            f"<BASE_PATH>{cdata(f'/var/lib/one/datastores/{datastore_id}')}</BASE_PATH>"
            f"<TYPE>{datastore['TYPE']}</TYPE><DISK_TYPE>0</DISK_TYPE><STATE>0</STATE>"
            f"<CLUSTERS><ID>0</ID></CLUSTERS><TOTAL_MB>{total}</TOTAL_MB>"
            f"<FREE_MB>{max(0, total - used_mb)}</FREE_MB><USED_MB>{used_mb}</USED_MB>"
            "<IMAGES>" + "".join(f"<ID>{i}</ID>" for i in sorted(image_ids)) + "</IMAGES>"
            + template_xml("TEMPLATE", {"DS_MAD": "fs", "TM_MAD": "ssh"}) + "</DATASTORE>")


def vnet_xml(network_id: int, network: dict) -> str:
    base = network["BASE"]
    return (f"<VNET><ID>{network_id}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>"
            f"<GNAME>oneadmin</GNAME><NAME>{network['NAME']}</NAME>{PERMISSIONS}"
            "<CLUSTERS><ID>0</ID></CLUSTERS><BRIDGE>br0</BRIDGE><BRIDGE_TYPE>linux"
            "</BRIDGE_TYPE><STATE>1</STATE><PREV_STATE>0</PREV_STATE>"
            "<PARENT_NETWORK_ID></PARENT_NETWORK_ID><VN_MAD>bridge</VN_MAD>"
            "<PHYDEV></PHYDEV><VLAN_ID></VLAN_ID><OUTER_VLAN_ID></OUTER_VLAN_ID>"
            "<VLAN_ID_AUTOMATIC>0</VLAN_ID_AUTOMATIC><OUTER_VLAN_ID_AUTOMATIC>0"
            "</OUTER_VLAN_ID_AUTOMATIC><USED_LEASES>0</USED_LEASES><VROUTERS></VROUTERS>"
            "<UPDATED_VMS></UPDATED_VMS><OUTDATED_VMS></OUTDATED_VMS>"
            "<UPDATING_VMS></UPDATING_VMS><ERROR_VMS></ERROR_VMS>"
            + template_xml("TEMPLATE", {"NETWORK_ADDRESS": base + "0"})
            + f"<AR_POOL><AR><AR_ID>{cdata(0)}</AR_ID><IP>{cdata(base + '10')}</IP>"
              f"<SIZE>{cdata(240)}</SIZE><TYPE>{cdata('IP4')}</TYPE></AR></AR_POOL></VNET>")


class Fault(Exception):
    """An OpenNebula error reply: [False, message, code]."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def parse_template(text: str) -> dict:
    """OpenNebula template syntax -> {NAME: value or [ {vector}, ... ]} (names upper case)."""
    token = re.compile(r'\s*(?:(#[^\n]*)|([A-Za-z_][A-Za-z0-9_]*)|"((?:[^"\\]|\\.)*)"|'
                       r"(\[)|(\])|(=)|(,)|([^\s,\]\[=\"]+))", re.S)
    items, pos = [], 0
    while pos < len(text):
        match = token.match(text, pos)
        if not match or match.end() == pos:
            if text[pos:].strip():
                raise Fault(f"syntax error in template near {text[pos:pos + 20]!r}", XML_RPC_API)
            break
        pos = match.end()
        if match.group(1) is None:
            items.append(match)
    result: dict = {}
    index = 0

    def value(i):
        m = items[i]
        if m.group(3) is not None:
            return re.sub(r"\\(.)", r"\1", m.group(3)), i + 1
        return (m.group(2) or m.group(8)), i + 1

    while index < len(items):
        name = (items[index].group(2) or "").upper()
        if not name or index + 1 >= len(items) or items[index + 1].group(6) is None:
            raise Fault("syntax error in template: expected NAME = VALUE", XML_RPC_API)
        index += 2
        if items[index].group(4):  # vector
            vector, index = {}, index + 1
            while not items[index].group(5):
                if items[index].group(7):
                    index += 1
                    continue
                key = items[index].group(2).upper()
                vector[key], index = value(index + 2)
            result.setdefault(name, []).append(vector)
            index += 1
        else:
            result[name], index = value(index)
    return result
