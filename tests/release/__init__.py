"""Running sagas across changes: recorded histories replay, versioning, the release line."""
