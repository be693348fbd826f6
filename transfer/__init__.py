"""The transfer station role: ``blagh pickup`` and ``blagh deliver`` move signed ciphertext
bundles between the server's pickup onion service and removable media (docs/pickup.md).

A role of its own, beside the server's package, since it runs on another machine with nothing of
the server installed (the ``transfer`` extra adds no dependency): it imports the shared kernel
(blagh) and crypto only (docs/architecture.md).
"""
