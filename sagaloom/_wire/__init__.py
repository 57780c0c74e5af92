"""What histories, visibility and the broker hold, byte for byte.

The names of activities, signals, updates, queries, memo keys and search attributes, the
step-key contract, the broker protocol, reply tokens, and the release line each run records.
Sandbox-safe and pure; a name changed here breaks running sagas (docs/upgrading.md).
"""
