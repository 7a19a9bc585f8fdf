package orderflow

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"strings"
)

// stateEventNamespace is the UUIDv5 namespace of StateEventID:
// 67f69c36-a896-59a6-aa4b-3a270c95a3cb, the name-based UUID of the URL
// https://orderflow.dev/state-event in the RFC 9562 URL namespace.
var stateEventNamespace = [16]byte{
	0x67, 0xf6, 0x9c, 0x36, 0xa8, 0x96, 0x59, 0xa6, 0xaa, 0x4b, 0x3a, 0x27, 0x0c, 0x95, 0xa3, 0xcb,
}

// StateEventID is the deterministic event id of the fact "order orderID reached version with an
// event of eventType": a UUIDv5 (RFC 9562 section 5.5, SHA-1 name-based) in the namespace
// 67f69c36-a896-59a6-aa4b-3a270c95a3cb of the name
//
//	<order id, lower-case>\n<version, decimal>\n<event type>
//
// so anyone can recompute it, in any language (Python: uuid.uuid5(ns, name)). The same fact
// always gets the same id, however often and by whatever path it is re-emitted (backfill, a
// reconcile repair). Consumers that dedupe on the event id (the deliverer's (event_id,
// endpoint_id) key, a partner's webhook-id) therefore take a re-emitted fact once, and the
// outbox's primary key refuses a second copy while the first row is still there. The order id
// is lower-cased when it is a UUID in its 36-character form, so one order has one id per fact.
//
// Events the API writes today carry random UUIDv7 ids, so a re-emission and the original event
// have different ids; consumers that apply by the order's version (the projector) take them as
// one fact anyway, consumers that dedupe by id only once the API writes StateEventID too.
func StateEventID(orderID string, version int, eventType string) string {
	if isUUIDText(orderID) {
		orderID = strings.ToLower(orderID)
	}
	name := make([]byte, 0, len(orderID)+len(eventType)+12)
	name = append(name, orderID...)
	name = append(name, '\n')
	name = strconv.AppendInt(name, int64(version), 10)
	name = append(name, '\n')
	name = append(name, eventType...)
	return uuidV5(stateEventNamespace, name)
}

// uuidV5 is the RFC 9562 version-5 UUID of name in namespace ns, in its text form.
func uuidV5(ns [16]byte, name []byte) string {
	h := sha1.New()
	h.Write(ns[:])
	h.Write(name)
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return formatUUID(u)
}

// The UUID code is written out here rather than imported because the root package stays free
// of database/sql, which google/uuid imports for its Scanner and Valuer.

func formatUUID(u [16]byte) string {
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

// isUUIDText reports whether s is a UUID in the 8-4-4-4-12 hex form, in either case.
func isUUIDText(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// StatePage is what one page of a backfill did: the orders it read, the state events it wrote
// to the outbox (fewer when a state was already there), and the last order id, where the next
// page starts ("" when there were no orders left).
type StatePage struct {
	Scanned     int
	Emitted     int
	LastOrderID string
}
