"""What every part of agentstream shares: settings, the error tree, the stream catalog,
Kafka clients, redaction and observability. Imports nothing but the contracts."""
