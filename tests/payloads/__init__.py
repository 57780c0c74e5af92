"""Large payloads, encryption and the attack surface."""
