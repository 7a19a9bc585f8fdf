package main

import (
	"context"
	"io"

	ofsql "orderflow/sql"
)

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL of the database owner (env DATABASE_URL)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlag("database-url", *dbURL, "DATABASE_URL"); err != nil {
		return err
	}
	return ofsql.Migrate(ctx, *dbURL, stdout)
}
