package postgres_test

import (
	"context"
	"testing"

	"orderflow/internal/testenv"
	"orderflow/postgres"
)

func mustDB(t *testing.T) (*postgres.DB, string) {
	t.Helper()
	dsn := testenv.NewDatabase(t)
	db, err := postgres.Open(context.Background(), dsn, 8)
	testenv.Must(t, err, "opening database")
	t.Cleanup(db.Close)
	return db, dsn
}
