"""How sagaloom writes payloads: the data converter and the optional encryption codec.

Used by clients, workers and the codec server, never by workflow code.
"""
