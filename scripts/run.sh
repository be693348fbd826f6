#!/usr/bin/env bash
# `make run`: start Blagh on embedded defaults in ./data, with a demonstration analyst key in
# ./demo when no data folder exists yet. The key is for trying things out only.
set -euo pipefail
BLAGH=.venv/bin/blagh
DATA=${DATA:-data}
DEMO=${DEMO:-demo}

if [ ! -d "$DATA" ]; then
  mkdir -p -m 0700 "$DEMO"
  if [ ! -f "$DEMO/analyst.key" ]; then
    umask 077
    head -c 24 /dev/urandom | base64 > "$DEMO/passphrase.txt"
    "$BLAGH" keygen --out "$DEMO/analyst.key" --passphrase-file "$DEMO/passphrase.txt" > "$DEMO/analyst.pub.txt"
  fi
  line=$(grep -m1 '^blagh-analyst-v1:' "$DEMO/analyst.pub.txt")
  "$BLAGH" init --data-dir "$DATA" --analyst-key-line "$line" > /dev/null
  echo "Created $DATA with a DEMONSTRATION analyst key, for trying Blagh out only:"
  echo "  key file:   $DEMO/analyst.key"
  echo "  passphrase: $DEMO/passphrase.txt"
  echo "For real use, run 'blagh keygen' on the analysts' workstation and 'blagh init' with their key lines."
  echo
fi

port=$(sed -n 's/^listen_port = \([0-9]*\).*/\1/p' "$DATA/config.toml" | head -1)
echo "Source interface: http://127.0.0.1:${port:-8080}/  (Ctrl-C stops it)"
exec "$BLAGH" serve --data-dir "$DATA"
