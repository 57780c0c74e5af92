"""Event-driven participants over NATS JetStream: commands, replies, intake, chaos."""
