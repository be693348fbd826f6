#!/usr/bin/env bash
# `make run`: start Blagh on embedded defaults in ./data, with a demonstration analyst key in
# ./demo when no data folder exists yet. The key is for trying things out only.
# TOR=offline|off|launch|attach overrides [tor] mode: offline starts tor with its network
# disabled (the onion address is made and printed, nothing is published), off skips tor.
# blagh serve prints the onion address and the local URL; Ctrl-C stops gunicorn and tor.
set -euo pipefail
BLAGH=.venv/bin/blagh
DATA=${DATA:-data}
DEMO=${DEMO:-demo}
TOR=${TOR:-}

case "$TOR" in
  ""|launch|attach|offline|off) ;;
  *) echo "make run: TOR=$TOR is not a tor mode; use TOR=offline, TOR=off, TOR=launch or TOR=attach" >&2
     exit 2 ;;
esac

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

exec "$BLAGH" serve --data-dir "$DATA" ${TOR:+--tor "$TOR"}
