"""Worker processes, the plugin, configuration, logs, metrics and traces."""
