#!/usr/bin/env bash
# A private Postfix instance used as the reference relay in benchmarks:
# listens on 127.0.0.1:LISTEN_PORT and relays everything to [127.0.0.1]:SINK_PORT,
# with Postfix's normal durability (queue files fsynced before 250).
# usage: postfix-relay.sh start LISTEN_PORT SINK_PORT | stop
# Needs Debian's postfix package (apt-get install postfix); runs as root.
# POSTFIX_BENCH_DIR (default /tmp/relay-bench-postfix) holds its
# configuration, queue and log (maillog); its parents must be open to the
# postfix user.
set -eu
DIR=${POSTFIX_BENCH_DIR:-/tmp/relay-bench-postfix}
case "${1:-}" in
start)
  listen=$2 sink=$3
  [ -d "$DIR/etc" ] && postfix -c "$DIR/etc" stop >/dev/null 2>&1 && sleep 2
  rm -rf "$DIR"; mkdir -p "$DIR/etc" "$DIR/spool" "$DIR/data"
  cp /etc/postfix/master.cf "$DIR/etc/master.cf"
  cp -r /etc/postfix/dynamicmaps.cf /etc/postfix/dynamicmaps.cf.d "$DIR/etc/" 2>/dev/null || true
  # the smtpd listener on the bench port instead of :25
  sed -i "s/^smtp      inet  n       -       y       -       -       smtpd/127.0.0.1:$listen inet n - n - - smtpd/" "$DIR/etc/master.cf"
  grep -q "^127.0.0.1:$listen" "$DIR/etc/master.cf" || { echo "could not set the listener in master.cf" >&2; exit 1; }
  cat > "$DIR/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $DIR/spool
data_directory = $DIR/data
mail_owner = postfix
myhostname = bench.localdomain
mydomain = localdomain
myorigin = localdomain
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$sink
smtp_host_lookup = native
disable_dns_lookups = yes
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = /dev/stdout
default_process_limit = 100
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtp_destination_concurrency_limit = 20
default_destination_concurrency_limit = 20
in_flow_delay = 0
smtpd_recipient_restrictions = permit_mynetworks, reject
CF
  chown postfix:postfix "$DIR/data"
  postfix -c "$DIR/etc" post-install create-missing >/dev/null 2>&1 || true
  # in the foreground, logging to a file of its own: no syslog daemon is needed
  setsid postfix -c "$DIR/etc" start-fg >"$DIR/maillog" 2>&1 < /dev/null &
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$listen") 2>/dev/null && exit 0; sleep 0.1; done
  echo "postfix does not listen on 127.0.0.1:$listen; see $DIR/maillog" >&2; exit 1
  ;;
stop)
  [ -d "$DIR/etc" ] && postfix -c "$DIR/etc" stop >/dev/null 2>&1 && sleep 2 || true
  ;;
*) echo "usage: $0 start LISTEN_PORT SINK_PORT | stop" >&2; exit 2;;
esac
