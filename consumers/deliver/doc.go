// Package deliver sends orderflow's events to partners as signed Standard Webhooks.
//
// Delivery is two loops that never wait on each other. The intake reads the order topic in
// its own consumer group and, per event, writes one pending delivery for every enabled
// endpoint subscribed to the event's type, then commits the Kafka offsets: a slow or dead
// endpoint can never hold up a partition. The sender claims due deliveries from PostgreSQL,
// POSTs them with a bounded number of attempts in flight per endpoint and overall, and
// schedules retries with exponential backoff and full jitter until the delivery succeeds or
// becomes a dead letter that an operator can replay.
package deliver
