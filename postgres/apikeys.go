package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"orderflow"
)

// ClientByKeyDigest finds the API key with this SHA-256 digest, unless it is revoked.
func (db *DB) ClientByKeyDigest(ctx context.Context, digest []byte) (orderflow.Client, bool, error) {
	var c orderflow.Client
	err := db.pool.QueryRow(ctx, `SELECT client_id, id, role FROM api_clients
		WHERE key_sha256 = $1 AND revoked_at IS NULL`, digest).Scan(&c.ID, &c.KeyID, &c.Role)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("looking up api key: %w", err)
	}
	return c, true, nil
}

// ErrNoAPIKey is returned for a key id that does not exist.
var ErrNoAPIKey = errors.New("no such api key")

const apiKeyColumns = `id, client_id, role, name, created_at, revoked_at`

func scanAPIKey(row pgx.Row) (orderflow.APIKey, error) {
	var k orderflow.APIKey
	err := row.Scan(&k.ID, &k.ClientID, &k.Role, &k.Name, &k.CreatedAt, &k.RevokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return k, ErrNoAPIKey
	}
	if err != nil {
		return k, fmt.Errorf("reading api key: %w", err)
	}
	k.CreatedAt = k.CreatedAt.UTC()
	if k.RevokedAt != nil {
		t := k.RevokedAt.UTC()
		k.RevokedAt = &t
	}
	return k, nil
}

// CreateAPIKey stores a new key by its digest only: the key itself is never written anywhere.
func (db *DB) CreateAPIKey(ctx context.Context, k orderflow.APIKey, digest []byte) (orderflow.APIKey, error) {
	out, err := scanAPIKey(db.pool.QueryRow(ctx, `INSERT INTO api_clients (id, client_id, role, name, key_sha256)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+apiKeyColumns, k.ID, k.ClientID, k.Role, k.Name, digest))
	if err != nil {
		return out, fmt.Errorf("creating api key: %w", err)
	}
	return out, nil
}

// APIKeys lists every key, revoked ones included, oldest first.
func (db *DB) APIKeys(ctx context.Context) ([]orderflow.APIKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_clients ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderflow.APIKey, error) { return scanAPIKey(r) })
}

// RevokeAPIKey revokes the key with id. Revoking a revoked key changes nothing and reports
// when it was revoked first. A running API stops accepting the key once its cache entry
// expires (seconds; see docs/API.md).
func (db *DB) RevokeAPIKey(ctx context.Context, id string) (orderflow.APIKey, error) {
	return scanAPIKey(db.pool.QueryRow(ctx, `UPDATE api_clients SET revoked_at = coalesce(revoked_at, now())
		WHERE id = $1 RETURNING `+apiKeyColumns, id))
}
