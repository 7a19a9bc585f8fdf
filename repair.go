package orderflow

import "strconv"

// repairNamespace is the UUIDv5 namespace of repair event ids
// (5b0f4bfc-7c4f-4d59-9f6e-0b3e6a1c1c57). It never changes: changing it would give every fact a
// second repair identity.
var repairNamespace = [16]byte{0x5b, 0x0f, 0x4b, 0xfc, 0x7c, 0x4f, 0x4d, 0x59, 0x9f, 0x6e, 0x0b, 0x3e, 0x6a, 0x1c, 0x1c, 0x57}

// RepairEventID is the event id of every repair that restates one fact: order orderID reached
// version with an event of eventType. It is a name-based UUID (version 5, RFC 9562) of the
// three, so repairing the same fact twice, from any reconcile run or process, yields the same
// id, and every receiver that dedupes on the event id (the deliverer's intake, a partner's
// webhook-id) takes it once. The original event of the fact has its own id (the outbox
// row's); receivers that must also tell a repair from its original compare (subject, type,
// data.version), the fact itself: the read model applies a version once, the deliverer never
// sends a second event of one fact to an endpoint, the mock partner acts once per fact. See
// docs/RECONCILE.md.
func RepairEventID(orderID string, version int, eventType string) string {
	return uuidV5(repairNamespace, []byte(orderID+"/"+strconv.Itoa(version)+"/"+eventType))
}
