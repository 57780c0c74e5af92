"""Operating and shipping: alerts, manifests, the Web UI, the demo, quick start, wheel, chaos."""
