#!/usr/bin/env bash
# Runs an example server and an example client against each other in two
# processes over transport KIND:
#
#   run_pair.sh KIND 'SERVER COMMAND' 'CLIENT COMMAND'
#
# The server command gets `--unique KIND --one-shot` appended and must print
# its name on one line; the client command gets the name and two messages.
# Exits 77 (ctest: skipped), printing why, when this build lacks KIND.
set -euo pipefail
kind=$1 server_cmd=$2 client_cmd=$3
work=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

mkfifo "$work/name"
# shellcheck disable=SC2086 # the commands are word lists on purpose
$server_cmd --unique "$kind" --one-shot > "$work/name" 2> "$work/server.err" &
server_pid=$!
if ! read -r -t 30 name < "$work/name"; then
  wait "$server_pid" || true
  if reason=$(grep -o "not available[^)]*" "$work/server.err"); then
    echo "SKIP example pair $(basename "${server_cmd%% *}") <-> $(basename "${client_cmd%% *}") over $kind: $reason"
    exit 77
  fi
  echo "the server printed no name:" >&2
  cat "$work/server.err" >&2
  exit 1
fi
# shellcheck disable=SC2086
$client_cmd "$name" "hello over $kind" "fail:nope" > "$work/client.out"
expected=$(printf 'reply: hello over %s\nremote error: nope' "$kind")
if [[ $(cat "$work/client.out") != "$expected" ]]; then
  echo "unexpected client output:" >&2
  cat "$work/client.out" >&2
  exit 1
fi
# A one-shot server ends by itself once its client has left.
wait "$server_pid"
echo "$(basename "${server_cmd%% *}") <-> $(basename "${client_cmd%% *}") over $kind: ok"
