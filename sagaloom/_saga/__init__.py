"""The saga model and its pure decisions.

What a saga is (steps, actions, compensations, their graph), what it reports, and the rules that
decide which step runs or is undone, which failure holds, which fan-out items are undone, what a
breaker does. Sandbox-safe and pure: no I/O, no clock, no environment; workflow code imports it.
"""
