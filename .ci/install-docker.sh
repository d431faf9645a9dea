#!/usr/bin/env bash
# Install Debian's docker.io and start dockerd when no Docker engine responds.
#
# Idempotent: when `docker info` already succeeds, it changes nothing. Works as
# root without systemd: dockerd runs in its own session (setsid), so it outlives
# the shell that started it, and it logs to $PRISM_DOCKERD_LOG.
#
# Environment:
#   PRISM_DOCKERD_FLAGS    dockerd flags to start with; when set, no fallback is tried
#   PRISM_DOCKERD_LOG      dockerd log file (default /tmp/prism-dockerd.log)
#   PRISM_DOCKERD_TIMEOUT  seconds to wait for `docker info` (default 60)
#
# dockerd starts with its defaults first (overlay2, docker0 bridge, iptables).
# If that does not respond in time, it is stopped and started again with
# --storage-driver=vfs --iptables=false --bridge=none. Containers then have no
# bridge network, so `docker run -p` publishes nothing (and reports no error)
# and tests must use `--network host`.
set -euo pipefail

readonly LOG="${PRISM_DOCKERD_LOG:-/tmp/prism-dockerd.log}"
readonly TIMEOUT="${PRISM_DOCKERD_TIMEOUT:-60}"
readonly PIDFILE=/var/run/docker.pid
readonly FALLBACK_FLAGS="--storage-driver=vfs --iptables=false --bridge=none"
STARTED_PID=""

log() { printf 'install-docker: %s\n' "$*" >&2; }

engine_responds() { docker info >/dev/null 2>&1; }

install_docker_io() {
  if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    return
  fi
  log "dockerd not found, installing Debian's docker.io"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
}

# True if the process exists and is not a zombie. PID 1 of some sandboxes does
# not reap orphans, so a killed dockerd can stay a zombie with its pid.
is_alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

running_dockerd_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [[ -n $pid && "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 1
  is_alive "$pid" || return 1
  echo "$pid"
}

wait_until_responding() {
  local waited
  for ((waited = 0; waited < TIMEOUT; waited++)); do
    if engine_responds; then
      log "dockerd responds after ${waited}s, pid $(running_dockerd_pid || echo unknown)"
      return 0
    fi
    if [[ -n ${1:-} ]] && ! is_alive "$1" && ! running_dockerd_pid >/dev/null; then
      log "dockerd exited; last lines of $LOG:"
      tail -n 20 "$LOG" >&2
      return 1
    fi
    sleep 1
  done
  log "dockerd did not respond within ${TIMEOUT}s; last lines of $LOG:"
  tail -n 20 "$LOG" >&2
  return 1
}

stop_dockerd() {
  local pid waited
  pid=$(running_dockerd_pid) || pid=$STARTED_PID
  [[ -n $pid ]] || return 0
  log "stopping dockerd pid $pid"
  kill "$pid" 2>/dev/null || true
  for ((waited = 0; waited < 40; waited++)); do
    is_alive "$pid" || return 0
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
}

# Start dockerd with the given flags and wait until it responds.
start_dockerd() {
  local flags=$1
  # A pid file left by a killed dockerd makes a new dockerd fail to start.
  rm -f "$PIDFILE"
  log "starting dockerd ${flags:-with default flags}, log: $LOG"
  printf '\n==== %s: dockerd %s\n' "$(date -u +%FT%TZ)" "$flags" >>"$LOG"
  # shellcheck disable=SC2086 # flags are a word list
  setsid dockerd $flags </dev/null >>"$LOG" 2>&1 9>&- &
  STARTED_PID=$!
  wait_until_responding "$STARTED_PID"
}

main() {
  if [[ $EUID -ne 0 ]]; then
    log "must run as root (uid is $EUID)"
    exit 1
  fi
  exec 9>/var/lock/prism-install-docker.lock
  flock 9
  install_docker_io
  if engine_responds; then
    return 0
  fi
  if running_dockerd_pid >/dev/null; then
    log "dockerd is running but not responding yet, waiting"
    wait_until_responding
    return
  fi
  if [[ -n ${PRISM_DOCKERD_FLAGS+set} ]]; then
    start_dockerd "$PRISM_DOCKERD_FLAGS"
    return
  fi
  if start_dockerd ""; then
    return 0
  fi
  stop_dockerd
  start_dockerd "$FALLBACK_FLAGS"
}

main "$@"
