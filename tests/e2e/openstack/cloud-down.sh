#!/bin/bash
# Stop everything cloud-up.sh started in $OS_BASE, by recorded PID only (children through
# their parent's PID), never by name.
OS_BASE=${OS_BASE:?set OS_BASE to an empty directory for the local cloud}
cd "$OS_BASE" || exit 0
SVCS="cinder-volume cinder-scheduler cinder-api neutron-server nova-compute nova-scheduler nova-conductor nova-api glance-api placement keystone"
pids=""
for n in $SVCS; do
  [ -f run/$n.pid ] || continue
  p=$(cat run/$n.pid); kill -0 $p 2>/dev/null || continue
  kids=$(pgrep -P $p | tr '\n' ' ')
  kill -TERM $p 2>/dev/null && echo "stopping $n ($p $kids)"; pids="$pids $p $kids"
done
for i in $(seq 1 20); do alive=""; for p in $pids; do kill -0 $p 2>/dev/null && alive="$alive $p"; done; [ -z "$alive" ] && break; sleep 1; done
for p in $alive; do kill -KILL $p 2>/dev/null; done
if [ -f rabbit/rabbitmq-env.sh ] && [ -f run/rabbitmq.pid ]; then
  p=$(cat run/rabbitmq.pid); kill -TERM $p 2>/dev/null && echo "stopping rabbitmq ($p)"
  for i in $(seq 1 30); do kill -0 $p 2>/dev/null || break; sleep 1; done
fi
[ -f run/epmd.pid ] && kill -TERM $(cat run/epmd.pid) 2>/dev/null && echo "stopped epmd"
rm -f run/*.pid
