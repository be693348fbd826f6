"""The server role: the reporters' web app (Flask under gunicorn, on a Tor onion service), the
pickup API transfer stations fetch bundles from (pickup/), and the server store (store/:
SQLCipher or PostgreSQL behind one Protocol) that holds only ciphertext.

It imports the shared kernel (blagh) and crypto, never another role; the ``blagh`` command
(blagh/cli/) starts it (docs/architecture.md).
"""
