"""The analyst's workstation, offline: the vault, bundle import, replies, and the review app.

``vault.py`` holds the decrypted reports in SQLCipher, unlocked by the analyst's passphrase;
``importer.py`` verifies a pickup bundle whole and decrypts it into the vault; ``replies.py``
seals replies and writes the signed reply bundle; ``app.py`` is the Flask app the analyst uses,
served on 127.0.0.1 by ``server.py``.  The ``blagh workstation`` commands
(``blagh/cli/workstation.py``) drive the same functions.
"""
