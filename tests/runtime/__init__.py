"""The runtime's rules on a real dev server: steps, undo, cancels, nesting, keys, fan-out, holds."""
