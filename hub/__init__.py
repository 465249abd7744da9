"""The hub core: device model, event bus, MQTT link, commands, storage, plug-ins, CLI."""

__version__ = "0.1.0"
