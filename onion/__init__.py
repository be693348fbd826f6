"""Publishing Blagh through tor: a narrow adapter over stem (docs/onion.md).

- :mod:`onion.tor`: start a tor of our own or attach to a running one, add and remove onion
  services; the only module that imports stem.
- :mod:`onion.keys`: the onion service keys kept in the data folder (stable addresses).
- :mod:`onion.clients`: Tor client authorisation keys for the pickup service.
- :mod:`onion.service`: what ``blagh serve``, ``blagh status`` and ``blagh onion client`` use.
- :mod:`onion.errors`: :class:`OnionError`, the root of every error raised here, and
  :func:`redact`, which keeps secrets out of messages and logs.
"""
