"""A service down or limited: breakers and limits."""
