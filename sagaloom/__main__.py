"""``python -m sagaloom`` is the ``saga`` command."""

from sagaloom._cli import main

main()
