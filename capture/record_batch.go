package capture

import (
	"encoding/binary"
	"hash/crc32"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"

	"orderflow"
)

// batchOverhead is a v2 record batch's header, counting the offset and length fields the
// broker includes when it compares a batch with max.message.bytes.
const batchOverhead = 61

// recordBatch is one uncompressed Kafka v2 record batch (the format of every produce request
// since Kafka 0.11), encoded by capture itself into a buffer its partition writer reuses.
//
// Why not kafka-go's Record and RecordSet: a profile of a backlog drain showed capture's CPU
// going to building each record twice (the event's ce_ headers, then a kafka-go Record with
// its own copies), formatting pg_lsn with fmt, and kafka-go's paged buffers copying every
// value once more; on a two-core machine every microsecond capture spends per event is taken
// from the walsender it reads from. Encoding straight into one buffer also makes a batch's
// size exact, so it fills a request right up to the topic's max.message.bytes.
//
// Layout (https://kafka.apache.org/documentation/#recordbatch): baseOffset int64,
// batchLength int32, partitionLeaderEpoch int32, magic int8 = 2, crc uint32 (CRC-32C of
// everything after it), attributes int16, lastOffsetDelta int32, baseTimestamp int64,
// maxTimestamp int64, producerId int64, producerEpoch int16, baseSequence int32, records
// int32, then the records. The buffer starts with the int32 size of the whole batch, which
// the produce request carries in front of it (see raw).
type recordBatch struct {
	buf []byte
	n   int
	ts  int64 // milliseconds, the same for every record: the timestamp deltas are all 0
}

const (
	sizeField       = 4 // the produce request's length of the record set, before the batch
	crcOffset       = sizeField + 8 + 4 + 4 + 1
	attributesStart = crcOffset + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// emptyHeader is the size field and batch header before raw fills them in.
var emptyHeader [sizeField + batchOverhead]byte

// reset starts an empty batch whose records carry the time now.
func (b *recordBatch) reset(now time.Time) {
	b.buf = append(b.buf[:0], emptyHeader[:]...)
	b.n = 0
	b.ts = now.UnixMilli()
}

// size is the batch's bytes as the broker counts them against max.message.bytes.
func (b *recordBatch) size() int { return len(b.buf) - sizeField }

// add appends e's record: the key, the data, the ce_ headers of binary mode and the position
// headers pg_lsn and pg_seq (docs/DATA.md).
func (b *recordBatch) add(e *outEvent) {
	var lsnBuf [17]byte
	lsn := appendLSN(lsnBuf[:0], e.pos.LSN)
	var seqBuf [10]byte
	seq := strconv.AppendUint(seqBuf[:0], uint64(e.pos.Seq), 10)

	// The record's length comes first, so count it before writing anything.
	body := 1 + 1 + varintLen(b.n) // attributes, timestamp delta 0, offset delta
	body += varintLen(len(e.key)) + len(e.key)
	body += varintLen(len(e.value)) + len(e.value)
	body += varintLen(len(e.headers) + 2)
	for _, h := range e.headers {
		body += varintLen(len(h.Key)) + len(h.Key) + varintLen(len(h.Value)) + len(h.Value)
	}
	body += varintLen(len(orderflow.HeaderLSN)) + len(orderflow.HeaderLSN) + varintLen(len(lsn)) + len(lsn)
	body += varintLen(len(orderflow.HeaderSeq)) + len(orderflow.HeaderSeq) + varintLen(len(seq)) + len(seq)

	buf := b.buf
	buf = binary.AppendVarint(buf, int64(body))
	buf = append(buf, 0)                       // attributes
	buf = binary.AppendVarint(buf, 0)          // timestamp delta
	buf = binary.AppendVarint(buf, int64(b.n)) // offset delta
	buf = binary.AppendVarint(buf, int64(len(e.key)))
	buf = append(buf, e.key...)
	buf = binary.AppendVarint(buf, int64(len(e.value)))
	buf = append(buf, e.value...)
	buf = binary.AppendVarint(buf, int64(len(e.headers)+2))
	for _, h := range e.headers {
		buf = appendHeader(buf, h.Key, h.Value)
	}
	buf = appendHeader(buf, orderflow.HeaderLSN, lsn)
	buf = appendHeader(buf, orderflow.HeaderSeq, seq)
	b.buf = buf
	b.n++
}

// mark and undo take back the last add: it made the batch larger than the topic accepts.
func (b *recordBatch) mark() int { return len(b.buf) }

func (b *recordBatch) undo(mark int) {
	b.buf = b.buf[:mark]
	b.n--
}

// raw fills in the header and returns the record set as a produce request carries it: its
// int32 size, then the batch. Valid until the next reset.
func (b *recordBatch) raw() []byte {
	buf := b.buf
	be := binary.BigEndian
	be.PutUint32(buf[0:], uint32(len(buf)-sizeField))
	h := buf[sizeField:]
	be.PutUint64(h[0:], 0)                      // base offset: the broker assigns offsets
	be.PutUint32(h[8:], uint32(len(h)-8-4))     // batch length: the bytes after this field
	be.PutUint32(h[12:], 0xFFFFFFFF)            // partition leader epoch: -1, a client's
	h[16] = 2                                   // magic
	be.PutUint16(h[21:], 0)                     // attributes: no compression, create time
	be.PutUint32(h[23:], uint32(max(b.n-1, 0))) // last offset delta
	be.PutUint64(h[27:], uint64(b.ts))          // base timestamp
	be.PutUint64(h[35:], uint64(b.ts))          // max timestamp
	be.PutUint64(h[43:], 0xFFFFFFFFFFFFFFFF)    // producer id: -1, not idempotent
	be.PutUint16(h[51:], 0xFFFF)                // producer epoch: -1
	be.PutUint32(h[53:], 0xFFFFFFFF)            // base sequence: -1
	be.PutUint32(h[57:], uint32(b.n))           // records
	be.PutUint32(buf[crcOffset:], crc32.Checksum(buf[attributesStart:], castagnoli))
	return buf
}

func appendHeader(buf []byte, key string, value []byte) []byte {
	buf = binary.AppendVarint(buf, int64(len(key)))
	buf = append(buf, key...)
	buf = binary.AppendVarint(buf, int64(len(value)))
	return append(buf, value...)
}

// appendLSN appends lsn as PostgreSQL and pglogrepl print it (%X/%X) without fmt's cost.
func appendLSN(b []byte, lsn pglogrepl.LSN) []byte {
	b = appendHexUpper(b, uint32(lsn>>32))
	b = append(b, '/')
	return appendHexUpper(b, uint32(lsn))
}

func appendHexUpper(b []byte, v uint32) []byte {
	const digits = "0123456789ABCDEF"
	var tmp [8]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[v&0xF]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// varintLen is the length of n as a zig-zag varint, the way Kafka writes lengths.
func varintLen(n int) int {
	l := 1
	for v := uint64(n) << 1; v >= 0x80; v >>= 7 {
		l++
	}
	return l
}
