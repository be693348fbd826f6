"""What the server and the workstation share at run time: configuration, the data directory
layout and the ``blagh`` command.

Deliberately thin (DESIGN.md): the web apps live in ``source_interface`` and
``journalist_interface``, the cryptography in ``crypto``.  Nothing here reads a file or the
environment at import time; callers load a :class:`blagh.config.Config` once and pass it down.
"""
