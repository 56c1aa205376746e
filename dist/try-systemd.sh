#!/usr/bin/env bash
# dist/try-systemd.sh: build the Debian package (dist/release.sh), install
# it with apt in a throwaway Debian 12 container running a real systemd, and
# check what README.md promises: the service enabled and started by the
# install, Type=notify readiness and status, delivery on 127.0.0.1:2525, one
# journal line per message, reload (a good file and a refused one),
# sendmail -t, a configuration error without a restart loop, a clean stop,
# the hardening's systemd-analyze security score, an upgrade that restarts
# it, apt remove (stopped, data kept) and apt purge (data deleted).
#
# Needs root, Go, systemd-nspawn and debootstrap
# (apt-get install systemd-container debootstrap), the Go module proxy the
# first time to build nfpm, and a Debian mirror the first time, to make the
# container's root file system (about a minute).
# After that a run takes about half a minute; the root file system is
# mounted read-only with a tmpfs on top (--volatile=overlay), so each run
# starts from a fresh Debian. Not part of .ci/run.
#
#   sudo dist/try-systemd.sh                  # exit status 0: every check passed
#
# RELAY_TRY_ROOT  the container's root file system (default
#                 /var/lib/machines/relay-bookworm; made if missing)
# RELAY_TRY_MIRROR  the Debian mirror for debootstrap (default
#                 http://deb.debian.org/debian)
# RELAY_TRY_KEEP=1  leave the container running at the end, and say how to
#                 enter it
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."
root=${RELAY_TRY_ROOT:-/var/lib/machines/relay-bookworm}
mirror=${RELAY_TRY_MIRROR:-http://deb.debian.org/debian}

die() { echo "try-systemd: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (systemd-nspawn needs it)"
for tool in systemd-nspawn debootstrap nsenter go; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install systemd-container debootstrap)"
done

if [ ! -x "$root/lib/systemd/systemd" ]; then
  echo "== debootstrap Debian 12 into $root (once)"
  rm -rf "$root.tmp"
  mkdir -p "$(dirname "$root")"
  debootstrap --include=systemd,dbus,curl,python3 bookworm "$root.tmp" "$mirror" >"$root.debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $root.debootstrap.log"
  mv "$root.tmp" "$root"
fi

# The package for this machine's architecture, as a release has it.
work=$(mktemp -d /tmp/relay-try.XXXXXX)
arch=$(go env GOARCH)
echo "== dist/release.sh linux/$arch"
mkdir -p "$work/relay"
dist/release.sh -o "$work/relay/pkg" "linux/$arch" >"$work/release.log" 2>&1 || { cat "$work/release.log"; die "dist/release.sh failed"; }
ls "$work/relay/pkg"/*.deb
sed -n '/^# --- inside the container ---$/,$p' "$self" >"$work/relay/checks.sh"

echo "== boot systemd in the container"
# Without systemd on the host (a container, another init) nspawn has no
# one to ask for a scope unit: it stays in the caller's cgroup.
unit=()
[ -d /run/systemd/system ] || unit=(--keep-unit)
setsid systemd-nspawn -D "$root" --volatile=overlay --bind-ro="$work/relay:/root/relay" \
  --private-network --register=no "${unit[@]}" --console=read-only -b \
  >"$work/console.log" 2>&1 </dev/null &
nspawn=$!
leader=
stop_container() {
  if [ -n "${RELAY_TRY_KEEP:-}" ] && [ -n "$leader" ]; then
    echo "try-systemd: the container runs on: nsenter -t $leader -a -r -w bash (stop it: kill $nspawn; rm -r $work)"
    return
  fi
  kill -TERM "$nspawn" 2>/dev/null || true # nspawn powers the container off
  for _ in $(seq 1 100); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$nspawn" 2>/dev/null || true
  rm -rf "$work"
}
trap stop_container EXIT
# The container's init: the child of systemd-nspawn that runs systemd (at
# first a short-lived helper runs there).
for _ in $(seq 1 100); do
  for pid in $(pgrep -P "$nspawn"); do
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] && leader=$pid
  done
  [ -n "$leader" ] && break
  kill -0 "$nspawn" 2>/dev/null || { cat "$work/console.log"; die "systemd-nspawn exited"; }
  sleep 0.1
done
[ -n "$leader" ] || die "no container after 10 s"
inside() {
  nsenter -t "$leader" -m -u -i -n -p -r -w -- /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
booted=
for _ in $(seq 1 120); do
  state=$(inside systemctl is-system-running 2>/dev/null) || true
  case $state in running | degraded) booted=1; break ;; esac
  sleep 0.5
done
[ -n "$booted" ] || { tail -20 "$work/console.log"; die "systemd did not finish booting in 60 s (state: ${state:-none})"; }
echo "booted: $(inside systemctl --version | head -1), state $state"

inside bash /root/relay/checks.sh
exit $?

# --- inside the container ---
# Run by try-systemd.sh in the container, as root, in /root/relay.
set -uo pipefail
cd /root/relay
failed=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failed=1; }
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}
# wait_for SECONDS COMMAND...: until COMMAND succeeds.
wait_for() {
  local n=$(($1 * 10)); shift
  for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
  return 1
}
journal() { journalctl -u relay --no-pager -o cat "$@"; }
count_new() { find "$1/new" -type f 2>/dev/null | wc -l; }

deb=$(ls /root/relay/pkg/relay_*.deb)
echo "== README, Install: apt install ./${deb##*/}"
set -x
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb"
relay version
systemctl status relay
set +x
check "the package is installed" test "$(dpkg-query -W -f '${Status}' relay)" = "install ok installed"
check "relay.service is enabled" test "$(systemctl is-enabled relay)" = enabled
check "relay is a system user (sysusers.d)" bash -c 'uid=$(id -u relay) && [ "$uid" -lt 1000 ] && [ "$(getent passwd relay | cut -d: -f6)" = /var/lib/relay ]'
check "/etc/relay/relay.toml is a conffile" grep -qx /etc/relay/relay.toml /var/lib/dpkg/info/relay.conffiles
check "/usr/sbin/sendmail is not the package's" bash -c '! dpkg -S /usr/sbin/sendmail 2>/dev/null'
cp /etc/relay/relay.toml /root/shipped.toml

echo "== started: Type=notify"
check "relay is active (running)" test "$(systemctl show relay -p ActiveState --value)/$(systemctl show relay -p SubState --value)" = active/running
check "Type=notify" test "$(systemctl show relay -p Type --value)" = notify
check "STATUS: serving SMTP on 127.0.0.1:2525" test "$(systemctl show relay -p StatusText --value)" = "serving SMTP on 127.0.0.1:2525"
check "systemd says Started after relay says it serves" \
  bash -c 'journalctl -u relay -o cat --no-pager | grep -E "relay started|^Started relay" | tail -2 | head -1 | grep -q "relay started"'
check "/var/lib/relay: relay:relay, 0700" test "$(stat -c '%U:%G %a' /var/lib/relay)" = "relay:relay 700"
check "only relay runs as the relay user" test "$(ps -o comm= -u relay)" = relay
# Without the notification socket systemd waits for READY=1 in vain: the
# start above did wait for relay's.
mkdir -p /etc/systemd/system/relay.service.d
printf '[Service]\nUnsetEnvironment=NOTIFY_SOCKET\nTimeoutStartSec=3s\n' >/etc/systemd/system/relay.service.d/no-notify.conf
systemctl daemon-reload
check "without NOTIFY_SOCKET the start times out (systemd waits for READY=1)" bash -c '! systemctl restart relay 2>/dev/null && [ "$(systemctl show relay -p Result --value)" = timeout ]'
rm -r /etc/systemd/system/relay.service.d
systemctl daemon-reload
systemctl reset-failed relay
systemctl start relay
check "started again" systemctl is-active -q relay

echo "== a message with curl"
printf 'From: app@example.com\r\nTo: ops@example.com\r\nSubject: curl\r\n\r\nhello\r\n' >/tmp/msg.eml
check "curl smtp://127.0.0.1:2525" curl -sS --url smtp://127.0.0.1:2525 --mail-from app@example.com --mail-rcpt ops@example.com --upload-file /tmp/msg.eml
check "it is in /var/lib/relay/maildir/new" wait_for 5 test "$(count_new /var/lib/relay/maildir)" = 1
check "one journal line for it" wait_for 5 test "$(journal | grep -c 'msg=delivered')" = 1
journal | grep 'msg=delivered'

echo "== systemctl reload relay: a good file"
pid=$(systemctl show relay -p MainPID --value)
sed -i 's/^default_profile = "local"/default_profile = "archive"/' /etc/relay/relay.toml
printf '\n[[profiles]]\nname = "archive"\nkind = "maildir"\npath = "/var/lib/relay/archive"\n' >>/etc/relay/relay.toml
check "relay check && systemctl reload relay" bash -c 'relay check -config /etc/relay/relay.toml >/dev/null && systemctl reload relay'
check "journal: configuration reloaded" wait_for 5 bash -c 'journalctl -u relay -o cat --no-pager | grep -q "configuration reloaded"'
check "same process" test "$(systemctl show relay -p MainPID --value)" = "$pid"
curl -sS --url smtp://127.0.0.1:2525 --mail-from app@example.com --mail-rcpt ops@example.com --upload-file /tmp/msg.eml
check "the next message goes to the new default profile" wait_for 5 test "$(count_new /var/lib/relay/archive)" = 1
cp /etc/relay/relay.toml /root/good.toml

echo "== systemctl reload relay: a broken file"
printf '\n[[profiles]]\nname = "broken"\nkind = "smtp"\nport = 99999\n' >>/etc/relay/relay.toml
check "relay check refuses it" bash -c '! relay check -config /etc/relay/relay.toml'
systemctl reload relay
check "journal: reload refused with FILE:LINE" wait_for 5 bash -c 'journalctl -u relay -o cat --no-pager | grep "reload refused" | grep -q "/etc/relay/relay.toml:[0-9]"'
check "  logged as an error (PRIORITY=3)" bash -c 'journalctl -u relay -p err -o cat --no-pager | grep -q "reload refused"'
check "still active, same process" test "$(systemctl is-active relay) $(systemctl show relay -p MainPID --value)" = "active $pid"
check "systemctl status shows it" bash -c 'systemctl status relay | grep -q "Status: \"serving SMTP on 127.0.0.1:2525; reload refused: /etc/relay/relay.toml:"'
systemctl status relay | sed -n '/Status:/p'
curl -sS --url smtp://127.0.0.1:2525 --mail-from app@example.com --mail-rcpt ops@example.com --upload-file /tmp/msg.eml
check "the configuration in effect stays" wait_for 5 test "$(count_new /var/lib/relay/archive)" = 2
cp /root/good.toml /etc/relay/relay.toml
systemctl reload relay

echo "== sendmail"
ln -s /usr/bin/relay /usr/sbin/sendmail
check "printf ... | sendmail -t" bash -c "printf 'To: x@example.com\nSubject: hi\n\nbody\n' | sendmail -t"
check "delivered" wait_for 5 bash -c 'grep -l "^Subject: hi" /var/lib/relay/archive/new/* >/dev/null 2>&1'
check "as another user (nobody), cron's flags" bash -c "printf 'Subject: cron\n\nout\n' | setpriv --reuid=65534 --regid=65534 --clear-groups /usr/sbin/sendmail -FCronDaemon -i -B8BITMIME -oem root"
check "one journal line a message" wait_for 5 test "$(journal | grep -c 'msg=delivered')" = 5
journal | grep 'msg=delivered' | tail -2

echo "== a configuration error at start"
printf '\n[server2]\nfoo = 1\n' >>/etc/relay/relay.toml
check "systemctl restart relay fails" bash -c '! systemctl restart relay 2>/dev/null'
check "exit status 2" test "$(systemctl show relay -p ExecMainStatus --value)" = 2
check "journal: FILE:LINE as an error" bash -c 'journalctl -u relay -p err -o cat --no-pager | grep -q "^/etc/relay/relay.toml:[0-9]*: server2: unknown key"'
sleep 6 # RestartSec=5s
check "no restart (RestartPreventExitStatus=2)" test "$(systemctl show relay -p NRestarts --value)/$(systemctl is-active relay)" = 0/failed
cp /root/good.toml /etc/relay/relay.toml
systemctl reset-failed relay
systemctl start relay
check "starts again once the file is fixed" systemctl is-active -q relay

echo "== systemctl stop relay"
start=$(date +%s%N)
systemctl stop relay
ms=$((($(date +%s%N) - start) / 1000000))
check "stopped in ${ms} ms, exit status 0" test "$ms" -lt 5000 -a "$(systemctl show relay -p Result --value)/$(systemctl show relay -p ExecMainStatus --value)" = success/0
journal -n 4

echo "== systemd-analyze security relay"
systemd-analyze security relay --no-pager | grep '✗'
score=$(systemd-analyze security relay --no-pager | sed -n 's/.*Overall exposure level for relay.service: \([0-9.]*\).*/\1/p')
check "exposure $score (want below 2.0)" awk -v s="$score" 'BEGIN { exit !(s != "" && s < 2.0) }'

echo "== an upgrade: the same package again"
systemctl start relay
pid=$(systemctl show relay -p MainPID --value)
check "dpkg -i over the installed version" bash -c "dpkg -i '$deb' >/dev/null"
check "relay restarted: active, a new process" bash -c '[ "$(systemctl is-active relay)" = active ] && [ "$(systemctl show relay -p MainPID --value)" != '"$pid"' ]'
check "the edited /etc/relay/relay.toml stays" cmp -s /etc/relay/relay.toml /root/good.toml

echo "== apt remove relay"
mail_before=$(count_new /var/lib/relay/archive)
check "apt-get remove relay" bash -c 'DEBIAN_FRONTEND=noninteractive apt-get remove -y -q relay >/dev/null'
check "relay stopped" bash -c '! systemctl is-active -q relay && ! pgrep -u relay >/dev/null'
check "nothing listens on 127.0.0.1:2525" bash -c '! curl -s --max-time 2 smtp://127.0.0.1:2525 >/dev/null'
check "/usr/bin/relay removed" test ! -e /usr/bin/relay
check "/var/lib/relay kept, with its $mail_before messages" test -d /var/lib/relay/spool -a "$(count_new /var/lib/relay/archive)" = "$mail_before"
check "/etc/relay/relay.toml kept" test -f /etc/relay/relay.toml
check "dpkg: removed, configuration files kept" test "$(dpkg-query -W -f '${Status}' relay)" = "deinstall ok config-files"

echo "== apt purge relay"
check "apt-get purge relay" bash -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -q relay >/dev/null'
check "/var/lib/relay deleted" test ! -e /var/lib/relay
check "/etc/relay deleted" test ! -e /etc/relay
check "dpkg forgot relay" bash -c 's=$(dpkg-query -W -f "\${Status}" relay 2>/dev/null); [ -z "$s" ] || [ "$s" = "unknown ok not-installed" ]'
rm -f /usr/sbin/sendmail

if [ "$failed" -ne 0 ]; then echo "try-systemd: some checks FAILED"; exit 1; fi
echo "try-systemd: every check passed"
