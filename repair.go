package orderflow

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
)

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
	h := sha1.New()
	h.Write(repairNamespace[:])
	h.Write([]byte(orderID + "/" + strconv.Itoa(version) + "/" + eventType))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}
