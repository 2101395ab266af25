"""Broker: every Redis command, the stream names and the wire format of messages and events."""
