// Package pgconfig parses orderflow's PostgreSQL URLs into pgx configurations that share one
// network behaviour: a connect timeout (the whole connect, TCP and startup, unless the URL sets
// connect_timeout) and the TCP keepalive and user timeout of internal/netdial, so a database
// that goes silent without closing the connection fails it in seconds rather than minutes.
// Queries still need their own context deadlines to notice a server whose kernel answers while
// the server does not.
package pgconfig

import (
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"orderflow/internal/netdial"
)

// Apply sets the network behaviour on c.
func Apply(c *pgconn.Config) {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = netdial.ConnectTimeout
	}
	c.DialFunc = netdial.DialContext
}

// Conn parses url for pgx.ConnectConfig.
func Conn(url string) (*pgx.ConnConfig, error) {
	c, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing database url: %w", err)
	}
	Apply(&c.Config)
	return c, nil
}

// Pool parses url for pgxpool.NewWithConfig.
func Pool(url string) (*pgxpool.Config, error) {
	c, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing database url: %w", err)
	}
	Apply(&c.ConnConfig.Config)
	return c, nil
}

// PgConn parses url for pgconn.ConnectConfig (replication connections).
func PgConn(url string) (*pgconn.Config, error) {
	c, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing database url: %w", err)
	}
	Apply(c)
	return c, nil
}
