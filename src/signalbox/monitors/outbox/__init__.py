"""The durable notification outbox: a notification is a row before it is a request."""
