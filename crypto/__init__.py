"""Blagh's cryptography, pure: no file or network I/O, no Flask, no logging.

Everything here takes bytes (or iterables of bytes) and returns bytes, so the server, the
workstation and the tests can drive it from any source, and so the browser's libsodium.js
implementation can be checked against it byte for byte.  The formats are specified in
docs/envelope.md (envelopes) and docs/keys.md (codenames, key files, signed manifests).

Every error raised here derives from :class:`crypto.errors.CryptoError`.
"""
