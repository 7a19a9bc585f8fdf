package capture

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"orderflow/internal/pgconfig"
	"orderflow/internal/tracing"
)

// ErrSlotLost means the replication slot was dropped or invalidated after capture had already
// published events, and this capture cannot rebuild it (decode-only mode has no topic to
// compare the outbox with). A normal capture rebuilds the slot instead (rebuild.go).
var ErrSlotLost = errors.New("replication slot lost")

// errSlotBusy means another process streams from the slot: this instance is the standby.
var errSlotBusy = errors.New("replication slot is active in another process")

// slotInfo is the row of pg_replication_slots that capture cares about.
type slotInfo struct {
	exists         bool
	plugin         string
	database       string
	walStatus      string
	confirmedFlush pglogrepl.LSN
}

func readSlot(ctx context.Context, db *pgx.Conn, slot string) (slotInfo, error) {
	var (
		si        slotInfo
		plugin    *string
		database  *string
		walStatus *string
		confirmed *string
	)
	err := db.QueryRow(ctx, `SELECT plugin, database, wal_status, confirmed_flush_lsn::text
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&plugin, &database, &walStatus, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return si, nil
	}
	if err != nil {
		return si, fmt.Errorf("reading replication slot %s: %w", slot, err)
	}
	si.exists = true
	si.plugin, si.database, si.walStatus = deref(plugin), deref(database), deref(walStatus)
	if confirmed != nil {
		if si.confirmedFlush, err = pglogrepl.ParseLSN(*confirmed); err != nil {
			return si, err
		}
	}
	return si, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// ensurePublication creates the publication on the outbox table for inserts only: capture
// never needs updates or deletes (retention deletes rows, and those deletes must not become
// events).
func ensurePublication(ctx context.Context, db *pgx.Conn, publication string) error {
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_publication WHERE pubname = $1`, publication).Scan(&n); err != nil {
		return fmt.Errorf("reading publication %s: %w", publication, err)
	}
	if n > 0 {
		return nil
	}
	_, err := db.Exec(ctx, `CREATE PUBLICATION `+pgx.Identifier{publication}.Sanitize()+
		` FOR TABLE outbox WITH (publish = 'insert')`)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" { // duplicate_object: a peer won the race
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating publication %s: %w", publication, err)
	}
	return nil
}

func createSlot(ctx context.Context, db *pgx.Conn, slot string) error {
	_, err := db.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating replication slot %s: %w", slot, err)
	}
	return nil
}

// dropSlot drops an invalidated slot so that it can be rebuilt under the same name. A slot
// still active in a walsender belongs to another capture: this one is the standby.
func dropSlot(ctx context.Context, db *pgx.Conn, slot string) error {
	_, err := db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55006" {
		return errSlotBusy
	}
	if err != nil {
		return fmt.Errorf("dropping invalidated replication slot %s: %w", slot, err)
	}
	return nil
}

// createSnapshotSlot creates a temporary slot on the replication connection conn and exports
// the snapshot it starts from: the snapshot sees exactly the transactions that committed before
// the slot's consistent point, and the slot decodes exactly those that commit after it. The
// snapshot stays importable until conn runs another command; the slot lives as long as conn.
// A name already taken means another capture is rebuilding: errSlotBusy.
func createSnapshotSlot(ctx context.Context, conn *pgconn.PgConn, name string) (pglogrepl.LSN, string, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: true, SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication,
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" {
		return 0, "", errSlotBusy
	}
	if err != nil {
		return 0, "", fmt.Errorf("creating temporary replication slot %s: %w", name, err)
	}
	start, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, "", fmt.Errorf("parsing consistent point of slot %s: %w", name, err)
	}
	return start, res.SnapshotName, nil
}

// copySlot makes slot a permanent copy of the temporary slot from: same plugin, same restart
// and confirmed positions.
func copySlot(ctx context.Context, db *pgx.Conn, from, slot string) error {
	if _, err := db.Exec(ctx, `SELECT pg_copy_logical_replication_slot($1, $2, false)`, from, slot); err != nil {
		return fmt.Errorf("copying replication slot %s to %s: %w", from, slot, err)
	}
	return nil
}

// slotStats is what the lag and WAL budget gauges show.
type slotStats struct {
	exists                  bool
	lagBytes, retainedBytes float64
	walStatus               string
	// safeBytes is safe_wal_size: WAL that may still be written before the slot is at risk;
	// hasSafe is false when max_slot_wal_keep_size is unlimited.
	safeBytes  float64
	hasSafe    bool
	limitBytes float64 // max_slot_wal_keep_size, -1 when unlimited
	walLSN     float64 // pg_current_wal_lsn()
}

func readSlotStats(ctx context.Context, db *pgx.Conn, slot string) (slotStats, error) {
	var s slotStats
	var lag, retained, safe *float64
	var status *string
	err := db.QueryRow(ctx, `SELECT pg_size_bytes(current_setting('max_slot_wal_keep_size'))::float8,
			(pg_current_wal_lsn() - '0/0'::pg_lsn)::float8,
			(pg_current_wal_lsn() - s.confirmed_flush_lsn)::float8,
			(pg_current_wal_lsn() - s.restart_lsn)::float8,
			s.wal_status, s.safe_wal_size::float8, s.slot_name IS NOT NULL
		FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`, slot).
		Scan(&s.limitBytes, &s.walLSN, &lag, &retained, &status, &safe, &s.exists)
	if err != nil {
		return s, fmt.Errorf("reading slot lag: %w", err)
	}
	if lag != nil {
		s.lagBytes = *lag
	}
	if retained != nil {
		s.retainedBytes = *retained
	}
	if status != nil {
		s.walStatus = *status
	}
	if safe != nil {
		s.safeBytes, s.hasSafe = *safe, true
	}
	return s, nil
}

// connect opens a connection with the network settings of internal/pgconfig: a connect
// timeout, TCP keepalive and a TCP user timeout.
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgconfig.Conn(dsn)
	if err != nil {
		return nil, err
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	return c, nil
}

// closeConn closes c, waiting at most a few seconds for a server that may not answer its
// goodbye.
func closeConn(c interface{ Close(context.Context) error }) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// replicationReadBuffer is the replication connection's read buffer.
const replicationReadBuffer = 256 << 10

// connectReplication opens a logical replication connection. The session prints timestamps
// in UTC ISO form so that created_at parses the same way whatever the server's TimeZone.
func connectReplication(ctx context.Context, dsn string) (*pgconn.PgConn, error) {
	cfg, err := pgconfig.PgConn(dsn)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["DateStyle"] = "ISO, MDY"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "orderflow-capture"
	}
	// A read buffer far larger than pgproto3's 8 KB: while capture catches up, one read takes
	// everything the walsender has queued on the socket, not six messages of a backlog (the
	// profile of a drain showed capture's biggest cost in read syscalls).
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, replicationReadBuffer), w)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting for replication: %w", err)
	}
	return conn, nil
}

func startReplication(ctx context.Context, conn *pgconn.PgConn, slot, publication string) error {
	err := pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names " + quoteLiteral(publication)},
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55006" { // object_in_use
		return errSlotBusy
	}
	if err != nil {
		return fmt.Errorf("starting replication from slot %s: %w", slot, err)
	}
	return nil
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

// The outbox columns capture reads, in the order of relation.cols.
const (
	colID = iota
	colAggregateType
	colAggregateID
	colEventType
	colSchemaVersion
	colPayload
	colCreatedAt
	numCols
)

var outboxColumns = [numCols]string{"id", "aggregate_type", "aggregate_id", "event_type", "schema_version", "payload", "created_at"}

// columnTraceParent is the outbox's optional column: nullable, and absent from a table migrated
// before 00012, whose rows simply carry no trace.
const columnTraceParent = "traceparent"

// relation maps the outbox columns to their positions in the tuples of one relation version.
// It is replaced on every Relation message, which is how ALTER TABLE ... ADD COLUMN keeps
// working mid-stream: pgoutput sends the new shape before the first tuple that uses it.
type relation struct {
	name string
	cols [numCols]int
	// traceParent is the position of the traceparent column plus one; 0 when there is none.
	traceParent int
}

func decodeRelation(data []byte) (*relation, uint32, error) {
	var m pglogrepl.RelationMessage
	if err := m.Decode(data[1:]); err != nil {
		return nil, 0, fmt.Errorf("decoding relation message: %w", err)
	}
	r := &relation{name: m.Namespace + "." + m.RelationName}
	for i := range r.cols {
		r.cols[i] = -1
	}
	for i, c := range m.Columns {
		if c.Name == columnTraceParent {
			r.traceParent = i + 1
		}
		for j, name := range outboxColumns {
			if c.Name == name {
				r.cols[j] = i
			}
		}
	}
	for j, idx := range r.cols {
		if idx < 0 {
			return nil, 0, fmt.Errorf("relation %s has no column %s", r.name, outboxColumns[j])
		}
	}
	return r, m.RelationID, nil
}

// decodeInsert decodes an Insert message (without its type byte) into ev. It reads the tuple
// in place instead of through pglogrepl's decoder, which copies every column byte by byte;
// the strings it keeps are copies, because data is reused by the next receive.
func decodeInsert(data []byte, rels map[uint32]*relation, ev *Event) error {
	if len(data) < 7 {
		return fmt.Errorf("insert message too short (%d bytes)", len(data))
	}
	relID := binary.BigEndian.Uint32(data)
	r := rels[relID]
	if r == nil {
		return fmt.Errorf("insert into unknown relation %d", relID)
	}
	if data[4] != 'N' {
		return fmt.Errorf("insert message: unexpected tuple type %q", data[4])
	}
	n := int(binary.BigEndian.Uint16(data[5:]))
	var vals [numCols][]byte
	var null [numCols]bool
	var traceParent []byte
	off := 7
	for i := 0; i < n; i++ {
		if off >= len(data) {
			return errors.New("insert message: truncated tuple")
		}
		kind := data[off]
		off++
		var v []byte
		switch kind {
		case 't', 'b':
			if off+4 > len(data) {
				return errors.New("insert message: truncated column length")
			}
			l := int(binary.BigEndian.Uint32(data[off:]))
			off += 4
			if off+l > len(data) {
				return errors.New("insert message: truncated column")
			}
			v = data[off : off+l]
			off += l
		case 'n', 'u':
		default:
			return fmt.Errorf("insert message: unknown column kind %q", kind)
		}
		for j, idx := range r.cols {
			if idx == i {
				vals[j], null[j] = v, kind != 't'
			}
		}
		if i+1 == r.traceParent && kind == 't' {
			traceParent = v
		}
	}
	for j := range vals {
		if null[j] {
			return fmt.Errorf("outbox row: column %s is null", outboxColumns[j])
		}
	}
	ev.ID = string(vals[colID])
	ev.AggregateType = string(vals[colAggregateType])
	ev.AggregateID = string(vals[colAggregateID])
	ev.EventType = string(vals[colEventType])
	sv, err := strconv.ParseInt(string(vals[colSchemaVersion]), 10, 64)
	if err != nil {
		return fmt.Errorf("outbox row %s: schema_version: %w", ev.ID, err)
	}
	ev.SchemaVersion = sv
	ev.Payload = vals[colPayload] // valid until the next receive: encode before then
	if ev.CreatedAt, err = parseTimestamptz(vals[colCreatedAt]); err != nil {
		return fmt.Errorf("outbox row %s: created_at: %w", ev.ID, err)
	}
	ev.TraceParent = validTraceParent(traceParent)
	return nil
}

// validTraceParent is b as a string when it is a valid traceparent, else "": a malformed value
// (written by hand into the outbox) is dropped rather than sent on as a header every consumer
// would have to refuse. Nothing is allocated for a row without one.
func validTraceParent(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := string(b)
	if _, err := tracing.Parse(s); err != nil {
		return ""
	}
	return s
}

var timestamptzLayouts = []string{
	"2006-01-02 15:04:05.999999999-07",
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999-07:00:00",
}

func parseTimestamptz(b []byte) (time.Time, error) {
	if t, ok := parseUTCTimestamptz(b); ok {
		return t, nil
	}
	s := string(b)
	var err error
	for _, layout := range timestamptzLayouts {
		var t time.Time
		if t, err = time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, err
}

// parseUTCTimestamptz parses the form the replication session prints every created_at in
// (TimeZone UTC, DateStyle ISO): "2006-01-02 15:04:05.999999+00", without time.Parse's
// layout matching, which a drain's profile showed for every event. Anything else (another
// offset, a year past 9999, BC, an impossible date) is left to the layouts.
func parseUTCTimestamptz(b []byte) (time.Time, bool) {
	n := len(b)
	if n < 22 || b[n-3] != '+' || b[n-2] != '0' || b[n-1] != '0' {
		return time.Time{}, false
	}
	b = b[:n-3]
	if b[4] != '-' || b[7] != '-' || b[10] != ' ' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(p []byte) (int, bool) {
		v := 0
		for _, c := range p {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19:]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		f, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for i := len(frac) - 1; i < 9; i++ {
			f *= 10
		}
		nsec = f
	}
	if month < 1 || month > 12 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day || int(t.Month()) != month {
		return time.Time{}, false // normalised: not a real date
	}
	return t, true
}
