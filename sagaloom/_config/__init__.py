"""The settings table: every ``SAGALOOM_*`` variable, its flag, default and meaning.

The environment is read through it, by the edges that call it (CLI, worker entry, client).
"""
