#!/bin/bash
# A small real OpenStack (Zed, Debian 12 packages) on 127.0.0.1 only, without systemd, for
# the OpenStack provider's tests and benchmark: keystone, glance (file store), placement,
# nova (api/conductor/scheduler/compute with the fake virt driver, whose host also reports
# 8 PGPU on a child resource provider and the CUSTOM_INFINIBAND trait, so GPU and
# InfiniBand flavors can be scheduled), neutron-server (ML2 without agents, a
# bind-everything mechanism driver), cinder (api/scheduler/volume with cinder's fake
# driver) and rabbitmq. All databases are SQLite; everything lives under $OS_BASE.
# Stop it with cloud-down.sh (same directory). Packages: scripts/test-deps.d/30-openstack.sh.
set -euo pipefail
OS_BASE=${OS_BASE:?set OS_BASE to an empty directory for the local cloud}
PW=${OS_PW:-secret}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
step() { echo "[$(date +%T)] $*"; }
mkdir -p "$OS_BASE"; cd "$OS_BASE"

############ 1. packages (no service is auto-started: policy-rc.d exit 101) ############
step "1. packages (no service is auto-started: policy-rc.d exit 101)"
dpkg -s python3-nova python3-neutron python3-cinder rabbitmq-server uwsgi-plugin-python3 >/dev/null 2>&1 || {
  echo "OpenStack packages missing: run scripts/test-deps.d/30-openstack.sh as root"; exit 3; }

# start from a clean slate (only inside $OS_BASE)
OS_BASE="$OS_BASE" bash "$HERE/cloud-down.sh" >/dev/null 2>&1 || true
rm -rf db log run glance nova neutron cinder rabbit etc wsgi bin pylib
mkdir -p pylib/ostack_fakemech-1.0.dist-info etc/{keystone,glance,placement,nova,neutron,cinder} log db run bin rabbit wsgi \
         glance/{images,staging,tasks} nova/{instances,lock} neutron/lock cinder/lock

############ 2. tiny launchers for things Debian ships only in the service packages ############
step "2. tiny launchers for things Debian ships only in the service packages"
mk() { printf '#!/usr/bin/python3\nimport sys\nfrom %s import main\nsys.exit(main())\n' "$2" > bin/$1; chmod +x bin/$1; }
mk nova-manage     nova.cmd.manage
mk nova-compute    nova.cmd.compute
mk glance-manage   glance.cmd.manage
mk neutron-db-manage neutron.db.migration.cli
mk neutron-server  neutron.cmd.eventlet.server
mk cinder-manage   cinder.cmd.manage
mk cinder-api      cinder.cmd.api
mk cinder-scheduler cinder.cmd.scheduler
mk cinder-volume   cinder.cmd.volume

# ML2 mechanism driver that binds every port on every host without any agent
# (so nova can boot servers on real neutron networks with the fake virt driver)
cat > pylib/ostack_fakemech.py <<'PYEOF'
from neutron_lib.api.definitions import portbindings
from neutron_lib import constants as const
from neutron_lib.plugins.ml2 import api


class BindAllMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OVS,
                                {portbindings.CAP_PORT_FILTER: True,
                                 portbindings.OVS_HYBRID_PLUG: False},
                                status=const.PORT_STATUS_ACTIVE)
            return
PYEOF
# make nova's FakeDriver.snapshot() really upload a few bytes to glance (the stock one leaves
# the snapshot image 'queued' forever). nova Zed only loads drivers from nova.virt.*, so the
# nova-compute launcher monkey-patches it instead.
cat > pylib/ostack_fakevirt.py <<'PYEOF'
import io

from nova.compute import task_states
from nova.image import glance
from nova.virt import fake


def _snapshot(self, context, instance, image_id, update_task_state):
    update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
    update_task_state(task_state=task_states.IMAGE_UPLOADING,
                      expected_state=task_states.IMAGE_PENDING_UPLOAD)
    glance.API().update(context, image_id,
                        {'disk_format': 'raw', 'container_format': 'bare'},
                        io.BytesIO(b'\0' * 4096), purge_props=False)


fake.FakeDriver.snapshot = _snapshot

# the fake host also has 8 physical GPUs (PGPU on a child provider, as real GPU hosts
# report them) and InfiniBand (a trait), so flavors asking for them can be scheduled
_plain_tree = fake.FakeDriver.update_provider_tree


def _update_provider_tree(self, provider_tree, nodename, allocations=None):
    _plain_tree(self, provider_tree, nodename, allocations=allocations)
    child = nodename + '-gpu'
    if not provider_tree.exists(child):
        provider_tree.new_child(child, nodename)
    provider_tree.update_inventory(child, {'PGPU': {
        'total': 8, 'reserved': 0, 'min_unit': 1, 'max_unit': 8, 'step_size': 1,
        'allocation_ratio': 1.0}})
    provider_tree.add_traits(nodename, 'CUSTOM_INFINIBAND')


fake.FakeDriver.update_provider_tree = _update_provider_tree
PYEOF
printf '#!/usr/bin/python3\nimport sys\nimport nova.cmd  # eventlet monkey-patching first\nsys.path.insert(0, "%s/pylib")\nimport ostack_fakevirt  # noqa\nfrom nova.cmd.compute import main\nsys.exit(main())\n' "$OS_BASE" > bin/nova-compute
# oslo.db opens every SQLite transaction with a deferred BEGIN. Nova reads a row and then
# updates it in one transaction (instance.save(), instance mappings...); when another
# process commits in between, SQLite (WAL) cannot upgrade the stale read to a write and
# answers "database is locked" at once, without waiting for the busy timeout: under a burst
# of boots a server went to ERROR ("Failure prepping block device") and deletes were
# dropped. BEGIN IMMEDIATE takes the write lock up front, so such transactions wait their
# turn instead (on MySQL/PostgreSQL, row locks and nova's deadlock retries do this).
cat > pylib/ostack_sqlite.py <<'PYEOF'
from sqlalchemy import event
from sqlalchemy.engine import Engine


def _begin_immediate(conn, cursor, statement, parameters, context, executemany):
    if statement == 'BEGIN' and conn.dialect.name == 'sqlite':
        return 'BEGIN IMMEDIATE', parameters
    return statement, parameters


event.listen(Engine, 'before_cursor_execute', _begin_immediate, retval=True)
PYEOF
for svc in conductor scheduler; do
  printf '#!/usr/bin/python3\nimport sys\nimport nova.cmd  # eventlet monkey-patching first\nsys.path.insert(0, "%s/pylib")\nimport ostack_sqlite  # noqa\nfrom nova.cmd.%s import main\nsys.exit(main())\n' "$OS_BASE" $svc > bin/nova-$svc
  chmod +x bin/nova-$svc
done
printf 'Metadata-Version: 2.1\nName: ostack-fakemech\nVersion: 1.0\n' > pylib/ostack_fakemech-1.0.dist-info/METADATA
printf '[neutron.ml2.mechanism_drivers]\nbindall = ostack_fakemech:BindAllMechanismDriver\n' > pylib/ostack_fakemech-1.0.dist-info/entry_points.txt
printf 'import sys\nsys.path.insert(0, "%s/pylib")\nimport ostack_sqlite  # noqa\nfrom nova.api.openstack.compute.wsgi import init_application\napplication = init_application()\n' "$OS_BASE" > wsgi/nova-api.py
echo 'from glance.common.wsgi_app import init_app
application = init_app()' > wsgi/glance-api.py

############ 3. config files ############
step "3. config files"
authtoken() { # $1 = service user
cat <<EOF
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:5000/v3
auth_url = http://127.0.0.1:5000/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $PW
service_token_roles_required = true
EOF
}

cat > etc/keystone/keystone.conf <<EOF
[DEFAULT]
log_file = $OS_BASE/log/keystone.log
[database]
connection = sqlite:///$OS_BASE/db/keystone.sqlite?timeout=60
[token]
provider = fernet
[fernet_tokens]
key_repository = $OS_BASE/etc/keystone/fernet-keys
[fernet_receipts]
key_repository = $OS_BASE/etc/keystone/fernet-keys
[credential]
key_repository = $OS_BASE/etc/keystone/credential-keys
EOF

cat > etc/placement/placement.conf <<EOF
[DEFAULT]
log_file = $OS_BASE/log/placement.log
[placement_database]
connection = sqlite:///$OS_BASE/db/placement.sqlite?timeout=60
[api]
auth_strategy = keystone
$(authtoken placement)
EOF

cat > etc/glance/glance-api.conf <<EOF
[DEFAULT]
log_file = $OS_BASE/log/glance-api.log
enabled_backends = fs:file
[database]
connection = sqlite:///$OS_BASE/db/glance.sqlite?timeout=60
[paste_deploy]
flavor = keystone
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $OS_BASE/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = $OS_BASE/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $OS_BASE/glance/tasks/
[oslo_concurrency]
lock_path = $OS_BASE/glance
$(authtoken glance)
EOF

cat > etc/glance/glance-api-paste.ini <<'EOF'
[pipeline:glance-api-keystone]
pipeline = cors healthcheck http_proxy_to_wsgi versionnegotiation osprofiler authtoken context rootapp
[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app
[app:apiversions]
paste.app_factory = glance.api.versions:create_resource
[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory
[filter:healthcheck]
paste.filter_factory = oslo_middleware:Healthcheck.factory
backends = disable_by_file
disable_by_file_path = /etc/glance/healthcheck_disable
[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory
[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true
[filter:osprofiler]
paste.filter_factory = osprofiler.web:WsgiMiddleware.factory
[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = glance
oslo_config_program = glance-api
[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware:HTTPProxyToWSGI.factory
EOF

cat > etc/neutron/neutron.conf <<EOF
[DEFAULT]
log_file = $OS_BASE/log/neutron-server.log
bind_host = 127.0.0.1
bind_port = 9696
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 0
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
api_paste_config = $OS_BASE/etc/neutron/api-paste.ini
transport_url = rabbit://guest:guest@127.0.0.1:5672/
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
state_path = $OS_BASE/neutron
[database]
connection = sqlite:///$OS_BASE/db/neutron.sqlite?timeout=60
[oslo_concurrency]
lock_path = $OS_BASE/neutron/lock
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = bindall
extension_drivers = port_security
[ml2_type_vxlan]
vni_ranges = 1:1000
[ml2_type_flat]
flat_networks = public
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:200
$(authtoken neutron)
EOF
cp /usr/lib/python3/dist-packages/neutron/tests/etc/api-paste.ini etc/neutron/api-paste.ini

cat > etc/cinder/cinder.conf <<EOF
[DEFAULT]
transport_url = rabbit://guest:guest@127.0.0.1:5672/
auth_strategy = keystone
log_dir = $OS_BASE/log
state_path = $OS_BASE/cinder
host = fakehost1
my_ip = 127.0.0.1
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = 8776
osapi_volume_workers = 1
api_paste_config = $OS_BASE/etc/cinder/api-paste.ini
glance_api_servers = http://127.0.0.1:9292
enabled_backends = fake
default_volume_type = fake
resource_query_filters_file = $OS_BASE/etc/cinder/resource_filters.json
[database]
connection = sqlite:///$OS_BASE/db/cinder.sqlite?timeout=60
[fake]
# cinder's own test driver (shipped in python3-cinder): no real storage
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
volume_backend_name = fake
[oslo_concurrency]
lock_path = $OS_BASE/cinder/lock
$(authtoken cinder)
EOF

# the filters users may list volumes by (Debian ships this file with cinder-common only)
cat > etc/cinder/resource_filters.json <<'EOF'
{"volume": ["name", "status", "metadata", "bootable", "migration_status", "availability_zone",
            "group_id", "size", "created_at", "updated_at"],
 "backup": ["name", "status", "volume_id"],
 "snapshot": ["name", "status", "volume_id", "metadata", "availability_zone"],
 "group": [], "group_snapshot": ["status", "group_id"],
 "attachment": ["volume_id", "status", "instance_id", "attach_status"],
 "message": ["resource_uuid", "resource_type", "event_id", "request_id", "message_level"],
 "pool": ["name", "volume_type"], "volume_type": []}
EOF

cat > etc/cinder/api-paste.ini <<'EOF'
[composite:osapi_volume]
use = call:cinder.api:root_app_factory
/: apiversions
/v3: openstack_volume_api_v3
[composite:openstack_volume_api_v3]
use = call:cinder.api.middleware.auth:pipeline_factory
keystone = cors http_proxy_to_wsgi request_id faultwrap sizelimit osprofiler authtoken keystonecontext apiv3
[filter:request_id]
paste.filter_factory = oslo_middleware.request_id:RequestId.factory
[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory
[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = cinder
[filter:faultwrap]
paste.filter_factory = cinder.api.middleware.fault:FaultWrapper.factory
[filter:osprofiler]
paste.filter_factory = osprofiler.web:WsgiMiddleware.factory
[filter:sizelimit]
paste.filter_factory = oslo_middleware.sizelimit:RequestBodySizeLimiter.factory
[app:apiv3]
paste.app_factory = cinder.api.v3.router:APIRouter.factory
[pipeline:apiversions]
pipeline = cors http_proxy_to_wsgi faultwrap osvolumeversionapp
[app:osvolumeversionapp]
paste.app_factory = cinder.api.versions:Versions.factory
[filter:keystonecontext]
paste.filter_factory = cinder.api.middleware.auth:CinderKeystoneContext.factory
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
EOF

cat > etc/nova/nova.conf <<EOF
[DEFAULT]
transport_url = rabbit://guest:guest@127.0.0.1:5672/
compute_driver = fake.FakeDriver
host = fakehost1
my_ip = 127.0.0.1
state_path = $OS_BASE/nova
instances_path = $OS_BASE/nova/instances
log_dir = $OS_BASE/log
use_rootwrap_daemon = false
allow_resize_to_same_host = true
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = $OS_BASE/etc/nova/api-paste.ini
[api_database]
connection = sqlite:///$OS_BASE/db/nova_api.sqlite?timeout=60
[database]
connection = sqlite:///$OS_BASE/db/nova.sqlite?timeout=60
[glance]
api_servers = http://127.0.0.1:9292
[placement]
region_name = RegionOne
auth_type = password
auth_url = http://127.0.0.1:5000/v3
project_domain_name = Default
user_domain_name = Default
project_name = service
username = nova
password = $PW
[neutron]
region_name = RegionOne
auth_type = password
auth_url = http://127.0.0.1:5000/v3
project_domain_name = Default
user_domain_name = Default
project_name = service
username = nova
password = $PW
[cinder]
os_region_name = RegionOne
[service_user]
# cinder (CVE-2023-2088 fix) only lets nova delete attachments with a service token
send_service_user_token = true
auth_type = password
auth_url = http://127.0.0.1:5000/v3
project_domain_name = Default
user_domain_name = Default
project_name = service
username = nova
password = $PW
[scheduler]
discover_hosts_in_cells_interval = 5
workers = 1
[conductor]
workers = 1
[oslo_concurrency]
lock_path = $OS_BASE/nova/lock
[vnc]
enabled = false
[spice]
enabled = false
[notifications]
notification_format = unversioned
$(authtoken nova)
EOF

cat > etc/nova/api-paste.ini <<'EOF'
[composite:osapi_compute]
use = call:nova.api.openstack.urlmap:urlmap_factory
/: oscomputeversions
/v2: oscomputeversion_legacy_v2
/v2.1: oscomputeversion_v2
/v2/+: openstack_compute_api_v21_legacy_v2_compatible
/v2.1/+: openstack_compute_api_v21
[composite:openstack_compute_api_v21]
use = call:nova.api.auth:pipeline_factory_v21
keystone = cors http_proxy_to_wsgi compute_req_id faultwrap request_log sizelimit osprofiler authtoken keystonecontext osapi_compute_app_v21
[composite:openstack_compute_api_v21_legacy_v2_compatible]
use = call:nova.api.auth:pipeline_factory_v21
keystone = cors http_proxy_to_wsgi compute_req_id faultwrap request_log sizelimit osprofiler authtoken keystonecontext legacy_v2_compatible osapi_compute_app_v21
[filter:request_log]
paste.filter_factory = nova.api.openstack.requestlog:RequestLog.factory
[filter:compute_req_id]
paste.filter_factory = nova.api.compute_req_id:ComputeReqIdMiddleware.factory
[filter:faultwrap]
paste.filter_factory = nova.api.openstack:FaultWrapper.factory
[filter:osprofiler]
paste.filter_factory = nova.profiler:WsgiMiddleware.factory
[filter:sizelimit]
paste.filter_factory = oslo_middleware:RequestBodySizeLimiter.factory
[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory
[filter:legacy_v2_compatible]
paste.filter_factory = nova.api.openstack:LegacyV2CompatibleWrapper.factory
[app:osapi_compute_app_v21]
paste.app_factory = nova.api.openstack.compute:APIRouterV21.factory
[pipeline:oscomputeversions]
pipeline = cors faultwrap request_log http_proxy_to_wsgi oscomputeversionapp
[pipeline:oscomputeversion_v2]
pipeline = cors compute_req_id faultwrap request_log http_proxy_to_wsgi oscomputeversionapp_v2
[pipeline:oscomputeversion_legacy_v2]
pipeline = cors compute_req_id faultwrap request_log http_proxy_to_wsgi legacy_v2_compatible oscomputeversionapp_v2
[app:oscomputeversionapp]
paste.app_factory = nova.api.openstack.compute.versions:Versions.factory
[app:oscomputeversionapp_v2]
paste.app_factory = nova.api.openstack.compute.versions:VersionsV2.factory
[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = nova
[filter:keystonecontext]
paste.filter_factory = nova.api.auth:NovaKeystoneContext.factory
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
EOF

cat > rabbit/rabbitmq-env.sh <<EOF
export HOME=$OS_BASE/rabbit
export RABBITMQ_NODENAME=rabbit@localhost
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=5672
export RABBITMQ_DIST_PORT=25672
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_MNESIA_BASE=$OS_BASE/rabbit/mnesia
export RABBITMQ_LOG_BASE=$OS_BASE/log/rabbit
export RABBITMQ_PID_FILE=$OS_BASE/run/rabbitmq.pid
export RABBITMQ_ENABLED_PLUGINS_FILE=$OS_BASE/rabbit/enabled_plugins
export RABBITMQ_CONFIG_FILE=$OS_BASE/rabbit/rabbitmq.conf
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
echo '[].' > rabbit/enabled_plugins
cat > rabbit/rabbitmq.conf <<EOF
listeners.tcp.default = 127.0.0.1:5672
loopback_users.guest = true
EOF

############ 4. start helpers ############
step "4. start helpers"
uw() { # name port wsgi-file [ENV=VAL]
  local name=$1 port=$2 file=$3; shift 3
  env "$@" uwsgi --plugin python3 --http-socket 127.0.0.1:$port --wsgi-file $file \
    --master --processes 1 --threads 1 --enable-threads --lazy-apps --need-app \
    --die-on-term --buffer-size 65535 --add-header "Connection: close" \
    --pidfile $OS_BASE/run/$name.pid --daemonize $OS_BASE/log/$name-uwsgi.log
}
bg() { # name cmd...
  local name=$1; shift
  nohup "$@" > $OS_BASE/log/$name.out 2>&1 &
  echo $! > $OS_BASE/run/$name.pid
}
# (every database URL carries ?timeout=60: on a busy machine SQLite's default 5 s wait for
# a lock is too short and nova-conductor drops a request with "database is locked")
wal() { for f in "$@"; do sqlite3 "$f" 'PRAGMA journal_mode=WAL;' >/dev/null; done; }  # readers must not block writers
waithttp() { for i in $(seq 1 120); do curl -s -o /dev/null http://127.0.0.1:$1/ && return 0; sleep 0.5; done; echo "http $1 not up"; return 1; }
waitport() { for i in $(seq 1 120); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.5; done; echo "port $1 not up"; return 1; }

############ 5. rabbitmq ############
step "5. rabbitmq"
( . rabbit/rabbitmq-env.sh; nohup /usr/lib/rabbitmq/bin/rabbitmq-server > $OS_BASE/log/rabbitmq.out 2>&1 & )

############ 6. keystone ############
step "6. keystone"
KM="keystone-manage --config-file $OS_BASE/etc/keystone/keystone.conf"
$KM db_sync
$KM fernet_setup --keystone-user root --keystone-group root
$KM credential_setup --keystone-user root --keystone-group root
wal db/keystone.sqlite
$KM bootstrap --bootstrap-password $PW --bootstrap-admin-url http://127.0.0.1:5000/v3 \
  --bootstrap-internal-url http://127.0.0.1:5000/v3 --bootstrap-public-url http://127.0.0.1:5000/v3 \
  --bootstrap-region-id RegionOne
uw keystone 5000 /usr/bin/keystone-wsgi-public OS_KEYSTONE_CONFIG_FILES=$OS_BASE/etc/keystone/keystone.conf
waithttp 5000

cat > adminrc <<EOF
export OS_AUTH_URL=http://127.0.0.1:5000/v3 OS_IDENTITY_API_VERSION=3
export OS_USERNAME=admin OS_PASSWORD=$PW OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_REGION_NAME=RegionOne
EOF
. ./adminrc
OSC=/usr/bin/openstack
# service project, users and catalog (one python process: ~5 s instead of ~90 s of CLI calls)
cat > bin/bootstrap_identity.py <<'PYEOF'
"""Create service project/users/roles/services/endpoints in one process (faster than N CLI calls)."""
import os
import openstack

pw = os.environ['OS_PW']
c = openstack.connect(cloud='envvars')
idn = c.identity
svc = idn.create_project(name='service', domain_id='default')
admin = idn.find_role('admin')
role_service = idn.create_role(name='service')
for u in ('nova', 'glance', 'placement', 'neutron', 'cinder'):
    user = idn.create_user(name=u, password=pw, domain_id='default')
    idn.assign_project_role_to_user(svc, user, admin)
    idn.assign_project_role_to_user(svc, user, role_service)
base = 'http://127.0.0.1'
for name, typ, url in (('glance', 'image', base + ':9292'),
                       ('nova', 'compute', base + ':8774/v2.1'),
                       ('placement', 'placement', base + ':8778'),
                       ('neutron', 'network', base + ':9696'),
                       ('cinderv3', 'volumev3', base + ':8776/v3/%(project_id)s')):
    s = idn.create_service(name=name, type=typ)
    for iface in ('public', 'internal', 'admin'):
        idn.create_endpoint(service_id=s.id, interface=iface, url=url, region_id='RegionOne')
print('identity bootstrap done')
PYEOF
OS_PW=$PW $PY bin/bootstrap_identity.py

############ 7. placement ############
step "7. placement"
placement-manage --config-file etc/placement/placement.conf db sync
wal db/placement.sqlite
uw placement 8778 /usr/bin/placement-api OS_PLACEMENT_CONFIG_DIR=$OS_BASE/etc/placement

############ 8. glance ############
step "8. glance"
bin/glance-manage --config-file etc/glance/glance-api.conf db_sync
wal db/glance.sqlite
uw glance-api 9292 $OS_BASE/wsgi/glance-api.py OS_GLANCE_CONFIG_DIR=$OS_BASE/etc/glance

############ 9. neutron ############
step "9. neutron"
# neutron's alembic migrations use ALTER CONSTRAINT, unsupported by SQLite:
# create the schema from the models (as neutron's unit tests do) and stamp it.
$PY - <<PYEOF
import sqlalchemy
from neutron.db.migration.models import head
head.get_metadata().create_all(sqlalchemy.create_engine('sqlite:///$OS_BASE/db/neutron.sqlite'))
PYEOF
bin/neutron-db-manage --config-file etc/neutron/neutron.conf stamp heads
wal db/neutron.sqlite
waitport 5672
bg neutron-server env PYTHONPATH=$OS_BASE/pylib bin/neutron-server --config-file etc/neutron/neutron.conf

############ 10. cinder ############
step "10. cinder"
bin/cinder-manage --config-file etc/cinder/cinder.conf db sync
wal db/cinder.sqlite
bg cinder-api       bin/cinder-api       --config-file etc/cinder/cinder.conf
bg cinder-scheduler bin/cinder-scheduler --config-file etc/cinder/cinder.conf
bg cinder-volume    bin/cinder-volume    --config-file etc/cinder/cinder.conf

############ 11. nova ############
step "11. nova"
NM="bin/nova-manage --config-file etc/nova/nova.conf"
$NM api_db sync
$NM cell_v2 map_cell0 --database_connection "sqlite:///$OS_BASE/db/nova_cell0.sqlite?timeout=60"
$NM cell_v2 create_cell --name cell1 --verbose || true
$NM db sync
wal db/nova_api.sqlite db/nova_cell0.sqlite db/nova.sqlite
waitport 5672
pgrep -x epmd > run/epmd.pid || true   # epmd was spawned by rabbit (loopback only)
uw nova-api 8774 $OS_BASE/wsgi/nova-api.py OS_NOVA_CONFIG_DIR=$OS_BASE/etc/nova
bg nova-conductor bin/nova-conductor --config-file etc/nova/nova.conf
bg nova-scheduler bin/nova-scheduler --config-file etc/nova/nova.conf
bg nova-compute   bin/nova-compute   --config-file etc/nova/nova.conf
waithttp 8774; waithttp 8778; waithttp 9292; waithttp 9696; waithttp 8776
# wait until nova-compute registered and the scheduler mapped it to cell1 (else boots fail
# with "Host 'fakehost1' is not mapped to any cell")
# (nova-manage's output is read whole before grep: with pipefail a grep -q that stops
# reading early would make the pipeline fail)
mapped() { local hosts; hosts=$($NM cell_v2 list_hosts 2>/dev/null || true); grep -q fakehost1 <<<"$hosts"; }
for i in $(seq 1 60); do
  mapped && break
  $NM cell_v2 discover_hosts >/dev/null 2>&1 || true
  sleep 2
done
mapped || { echo "nova-compute did not register; see log/nova-compute.log"; exit 1; }
# default volume type for the fake backend
# (cinder-api may still be settling: a 500 here is retried)
for i in $(seq 1 20); do
  $OSC volume type show fake >/dev/null 2>&1 && break
  $OSC volume type create --property volume_backend_name=fake fake >/dev/null 2>&1 || sleep 3
done
$OSC volume type show fake >/dev/null
step "services started"
