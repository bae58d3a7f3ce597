"""goe-bridge: go-e EV chargers ↔ MQTT."""

__version__ = "0.1.0"
