# Shared by scripts/demo and scripts/cluster: run a stack of local services in the foreground.
# The sourcing script sets STACK_NAME (its name in messages), STACK_DIR (logs and state) and
# BIN (the venv's bin), and defines stop_extras (what to stop besides the started processes).
# shellcheck shell=bash

PIDS=()
NAMES=()

log() { echo "$STACK_NAME: $*" >&2; }
die() {
    echo "$STACK_NAME: error: $*" >&2
    exit 1
}

reset_sigint() { # reset_sigint "$0" "$@": see the comment inside
    # Started in the background (`scripts/demo &`, or from another script) a shell ignores
    # SIGINT, and bash cannot trap a signal it ignored at entry: run again with SIGINT at its
    # default, so that `kill -INT` stops the stack as Ctrl-C does. (coreutils >= 9; else SIGTERM.)
    if [[ -z ${STACK_SIGINT_RESET:-} ]] && env --default-signal=INT true 2>/dev/null; then
        exec env --default-signal=INT STACK_SIGINT_RESET=1 "$@"
    fi
}

secret_file() { # secret_file PATH GENERATOR...: create a 0600 file once, then reuse it
    local path=$1
    shift
    if [[ ! -s $path ]]; then
        (umask 077 && "$@" >"$path")
    fi
}

random_secret() { # random_secret BYTES: hex, for secret_file
    "$BIN/python" -c "import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))" "$1"
}

cleanup() {
    trap - EXIT INT TERM
    log "stopping"
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    stop_extras
    log "stopped; nothing is left running"
}

stop_on() { # stop_on SIGNAL: asked to stop (Ctrl-C, kill): a clean stop, exit 0
    log "$1 received"
    exit 0 # the EXIT trap stops everything
}

trap_stops() {
    trap cleanup EXIT
    trap 'stop_on SIGINT' INT
    trap 'stop_on SIGTERM' TERM
}

start() { # start NAME COMMAND...: run a service in the background, its output in NAME.log
    local name=$1
    shift
    "$@" >"$STACK_DIR/$name.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
}

wait_for_exit() { # returns when a service exits on its own, and says which and how
    local pid=0 rc=0 i
    wait -n -p pid "${PIDS[@]}" || rc=$?
    for i in "${!PIDS[@]}"; do
        if [[ ${PIDS[$i]} == "$pid" ]]; then
            die "${NAMES[$i]} exited on its own (status $rc); see $STACK_DIR/${NAMES[$i]}.log"
        fi
    done
    die "a service exited (status $rc); see the logs in $STACK_DIR"
}

wait_ready() { # wait_ready URL PID NAME: until URL answers 200 (60 s), or the process exits
    local i
    for i in $(seq 1 300); do
        kill -0 "$2" 2>/dev/null || die "$3 exited; see $STACK_DIR/$3.log"
        if "$BIN/python" - "$1" <<'PY' 2>/dev/null; then return 0; fi
import sys, httpx
sys.exit(0 if httpx.get(sys.argv[1], timeout=1).status_code == 200 else 1)
PY
        sleep 0.2
    done
    die "$3 not ready after 60 s; see $STACK_DIR/$3.log"
}

client_setting() { # client_setting CLIENT_ENV NAME: a value from a Kafka cluster's client.env
    (
        set -a
        # shellcheck disable=SC1090
        . "$1"
        printf '%s' "${!2}"
    )
}

port_free() {
    ! "$BIN/python" -c "import socket,sys; s=socket.socket(); s.connect(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null
}
