"""Event-driven participants on NATS JetStream: commands, replies, lifecycle events, dead letters.

Private: the public names are re-exported from ``sagaloom`` (``Command``), ``sagaloom.server``
(``NatsServer``) and ``sagaloom.participants`` (the broker protocol's names).
"""
