"""The house's own checks: docs against code, the promise ledger, mutations, layout, public API."""
