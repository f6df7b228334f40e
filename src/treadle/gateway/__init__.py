"""The gateway: one OpenAI endpoint in front of many replicas (routing, retries, health, drain)."""
