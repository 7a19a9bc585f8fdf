package postgres_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"orderflow/internal/testenv"
	"orderflow/postgres"
)

// TestTLSPathVerifiesTheServer: over the stack's TLS path (sslmode=verify-full against its
// CA) the adapter connects, as the owner and as the API's role, and the session is encrypted;
// a CA that did not sign the server's certificate is refused.
func TestTLSPathVerifiesTheServer(t *testing.T) {
	t.Parallel()
	tlsURL := testenv.DatabaseTLSURL(t)
	_, dsn := mustDB(t)
	u, err := url.Parse(tlsURL)
	testenv.Must(t, err, "parsing the TLS URL")
	plain, err := url.Parse(dsn)
	testenv.Must(t, err, "parsing the database URL")
	u.Path = plain.Path // this test's own database, over TLS
	ctx := context.Background()

	for _, role := range []string{"", "orderflow_api"} {
		dsn := u.String()
		if role != "" {
			dsn = testenv.AsRole(t, dsn, role)
		}
		db, err := postgres.Open(ctx, dsn, 2)
		testenv.Must(t, err, "opening over TLS")
		testenv.Must(t, db.Ping(ctx), "pinging over TLS as "+role)
		if role == "" {
			_, err = db.SetStock(ctx, "sku-tls", 5)
			testenv.Must(t, err, "writing over TLS")
		}
		db.Close()
		c := testenv.Connect(t, dsn)
		var encrypted bool
		testenv.Must(t, c.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&encrypted), "reading pg_stat_ssl")
		if !encrypted {
			t.Fatalf("the session as %q is not encrypted", role)
		}
	}

	bad := *u
	q := bad.Query()
	q.Set("sslrootcert", otherCAFile(t))
	bad.RawQuery = q.Encode()
	db, err := postgres.Open(ctx, bad.String(), 1)
	if err == nil {
		err = db.Ping(ctx)
		db.Close()
	}
	if err == nil {
		t.Fatal("a CA that did not sign the server's certificate was accepted")
	}
}

func otherCAFile(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	testenv.Must(t, err, "making a key")
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the orderflow CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	testenv.Must(t, err, "making a certificate")
	path := filepath.Join(t.TempDir(), "other-ca.crt")
	testenv.Must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644), "writing the CA")
	return path
}
