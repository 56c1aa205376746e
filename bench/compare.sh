#!/usr/bin/env bash
# One run, side by side: the loopback ceiling (smtp-source straight into
# smtp-sink), a private Postfix as a relay, and relay built from this tree
# with bench/relay.toml (queue mode, fsync on). Prints, per workload, the
# median end-to-end messages/s of REPEATS runs for each, the ratios
# relay/postfix and relay/ceiling, and relay's peak RSS.
# usage: [REPEATS=3] [BENCH_PORTS=26100] bench/compare.sh
#        RELAY_PORT=P RELAY_SINK_PORT=S bench/compare.sh   # a relay you started
# Ports on 127.0.0.1, from BENCH_PORTS=B: Postfix B and its sink B+1, the
# ceiling B+50, relay B+100 and its sink B+101 (PF_PORT, PF_SINK, CEIL_PORT
# set one each). A port already in use stops the run before it starts.
# Needs root, Go and Debian's postfix package (smtp-source, smtp-sink,
# postfix). Loopback only; every step is bounded (throughput.sh waits at
# most WAIT_S=120 s per run).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repeats=${REPEATS:-3}
base=${BENCH_PORTS:-26100}
PF_PORT=${PF_PORT:-$base} PF_SINK=${PF_SINK:-$((base + 1))} CEIL_PORT=${CEIL_PORT:-$((base + 50))}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
busy=""
for port in "$PF_PORT" "$PF_SINK" "$CEIL_PORT" ${RELAY_PORT:-$((base + 100))} "${RELAY_SINK_PORT:-$((base + 101))}"; do
  [ "$port" = "${RELAY_PORT:-}" ] && continue   # the relay you started listens there
  listening "$port" && busy="$busy $port"
done
if [ -n "$busy" ]; then
  echo "compare.sh: 127.0.0.1 port(s)$busy already in use (another compare.sh run?); pick others with BENCH_PORTS=<base>" >&2
  exit 1
fi
work=$(mktemp -d /tmp/relay-bench.XXXXXX)
chmod 755 "$work"   # Postfix's users enter its directory in here
export POSTFIX_BENCH_DIR="$work/postfix"
relay_pid=""
cleanup() {
  [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
  "$here/postfix-relay.sh" stop
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${RELAY_PORT:-}" ]; then
  RELAY_PORT=$((base + 100)) RELAY_SINK_PORT=$((base + 101))
  echo "building relay" >&2
  (cd "$here/.." && timeout 600 go build -o "$work/relay" ./cmd/relay) || exit 1
  # bench/relay.toml with this run's ports (26200 and 26201 as written)
  sed -e "s/127\.0\.0\.1:26200/127.0.0.1:$RELAY_PORT/" -e "s/^port = 26201$/port = $RELAY_SINK_PORT/" "$here/relay.toml" >"$work/relay.toml"
  grep -q "127.0.0.1:$RELAY_PORT\"" "$work/relay.toml" && grep -q "^port = $RELAY_SINK_PORT$" "$work/relay.toml" ||
    { echo "compare.sh: could not set the ports in relay.toml" >&2; exit 1; }
  (cd "$work" && exec ./relay serve -config relay.toml >relay.log 2>&1) &
  relay_pid=$!
  for _ in $(seq 100); do listening "$RELAY_PORT" && break; sleep 0.1; done
  listening "$RELAY_PORT" || { echo "relay does not listen; see its log:" >&2; cat "$work/relay.log" >&2; exit 1; }
fi
RELAY_SINK_PORT=${RELAY_SINK_PORT:-$((base + 101))}
"$here/postfix-relay.sh" start "$PF_PORT" "$PF_SINK" || exit 1

rate() { "$here/throughput.sh" "$@" | sed -n 's/.*delivered_per_s=\([0-9]*\) delivered=\([0-9]*\)\/\([0-9]*\).*/\1 \2 \3/p'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
relay_rss() { [ -n "$relay_pid" ] && awk '/VmHWM/ {print $2 " kB"}' "/proc/$relay_pid/status" 2>/dev/null; }

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %10s %10s %10s %14s %14s\n' workload ceiling postfix relay relay/postfix relay/ceiling
for w in "2000 10240 10" "2000 10240 50" "200 1048576 10" "200 1048576 50"; do
  set -- $w; n=$1 size=$2 sess=$3
  c=() p=() r=() lost=""
  for _ in $(seq "$repeats"); do
    read -r v _ _ < <(rate "$CEIL_PORT" "$CEIL_PORT" "$n" "$size" "$sess"); c+=("${v:-0}")
    read -r v g t < <(rate "$PF_PORT" "$PF_SINK" "$n" "$size" "$sess"); p+=("${v:-0}"); [ "${g:-0}" = "${t:-x}" ] || lost="$lost postfix:${g:-0}/$n"
    read -r v g t < <(rate "$RELAY_PORT" "$RELAY_SINK_PORT" "$n" "$size" "$sess"); r+=("${v:-0}"); [ "${g:-0}" = "${t:-x}" ] || lost="$lost relay:${g:-0}/$n"
  done
  mc=$(printf '%s\n' "${c[@]}" | median); mp=$(printf '%s\n' "${p[@]}" | median); mr=$(printf '%s\n' "${r[@]}" | median)
  rp=$(awk -v a="$mr" -v b="$mp" 'BEGIN{printf "%.2f", (b>0)?a/b:0}'); rc=$(awk -v a="$mr" -v b="$mc" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')
  printf '%-22s %10s %10s %10s %14s %14s%s\n' "n=$n size=$size s=$sess" "$mc" "$mp" "$mr" "$rp" "$rc" "${lost:+  incomplete:$lost}"
done
rss=$(relay_rss); [ -n "$rss" ] && echo "relay peak RSS: $rss"
