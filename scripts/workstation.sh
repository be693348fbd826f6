#!/usr/bin/env bash
# `make workstation`: the analysts' review app on a DEMONSTRATION vault ($DEMO/vault), paired with
# the demonstration key and data folder that `make run` made, so that a report can be followed
# end to end on one machine: report on the source interface, pick it up here, reply, carry the
# reply bundle back, read the reply with the codename. For trying Blagh out only: a real
# workstation is isolated, and its key never sits next to a server's data folder.
set -euo pipefail
BLAGH=.venv/bin/blagh
PY=.venv/bin/python
DATA=${DATA:-data}
DEMO=${DEMO:-demo}
VAULT=${VAULT:-$DEMO/vault}
PORT=${PORT:-8090}
PASSPHRASE_FILE="$DEMO/passphrase.txt"

if [ ! -f "$DEMO/analyst.key" ] || [ ! -f "$PASSPHRASE_FILE" ] || [ ! -d "$DATA" ]; then
  echo "make workstation: run 'make run' first: it makes the demonstration key in $DEMO/ and the server's data folder $DATA/" >&2
  exit 1
fi

if [ ! -d "$VAULT" ]; then
  # The server's public key line, as `blagh init` printed it, recomputed from its signing key.
  server_line=$("$PY" -c '
import sys
from pathlib import Path
from blagh.datadir import DataDir
print(DataDir(Path(sys.argv[1])).read_server_signing_key().public().to_line())
' "$DATA")
  "$BLAGH" workstation init --vault "$VAULT" --key-file "$DEMO/analyst.key" \
    --server-key "$server_line" --passphrase-file "$PASSPHRASE_FILE"
  echo
fi

# Bring in what the source interface received so far: the server writes a pickup bundle (the
# transfer station's part, without any network), the workstation verifies and imports it.
# Bundles hold ciphertext only; an item already imported is skipped.
mkdir -p -m 0700 "$DEMO/bundles"
bundle="$DEMO/bundles/pickup-$(date +%Y%m%d-%H%M%S).bundle"
"$BLAGH" export-bundle --data-dir "$DATA" --out "$bundle"
"$BLAGH" workstation import --vault "$VAULT" --passphrase-file "$PASSPHRASE_FILE" "$bundle"
echo

echo "DEMONSTRATION passphrase (in $PASSPHRASE_FILE): $(head -n1 "$PASSPHRASE_FILE")"
echo "After replying, make a reply bundle in the app (Reply bundles), then apply it on the server:"
echo "  $BLAGH import-replies --data-dir $DATA $VAULT/outbox/replies-….bundle"
echo "Run 'make workstation' again to pick up what was reported since."
echo
exec "$BLAGH" workstation serve --vault "$VAULT" --port "$PORT"
