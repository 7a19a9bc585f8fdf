package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"orderflow/internal/kafka"
	"orderflow/internal/testenv"
)

// otherCA writes a CA certificate that signed nothing the stack serves.
func otherCA(t *testing.T) string {
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

// TestSASLSSLListener: over the stack's SASL_SSL listener, with the broker's certificate
// verified against the stack's CA and SCRAM-SHA-512 credentials, a client creates a topic, a
// writer produces and a reader consumes (the three kinds of connection the services make). A
// wrong password and a CA that did not sign the broker's certificate are both refused.
func TestSASLSSLListener(t *testing.T) {
	t.Parallel()
	l := testenv.KafkaSASLListener(t)
	sec, err := kafka.LoadSecurity(kafka.SecurityConfig{CAFile: l.CAFile, SASLMechanism: "SCRAM-SHA-512", Username: l.Username, Password: l.Password})
	testenv.Must(t, err, "loading the security settings")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &kafkago.Client{Addr: kafkago.TCP(l.Brokers...), Timeout: 20 * time.Second, Transport: sec.Transport()}
	topic := testenv.UniqueName("ofsasl")
	_, err = kafka.CreateTopic(ctx, client, kafka.TopicSpec{Name: topic, Partitions: 1})
	testenv.Must(t, err, "creating a topic over SASL_SSL")
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: []string{topic}})
	})

	w := &kafkago.Writer{Addr: kafkago.TCP(l.Brokers...), Topic: topic, Transport: sec.Transport(), RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	for {
		err = w.WriteMessages(ctx, kafkago.Message{Value: []byte("one")}, kafkago.Message{Value: []byte("two")})
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // the new topic's leader is elected a moment later
	}
	testenv.Must(t, err, "producing over SASL_SSL")
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: l.Brokers, Topic: topic, Partition: 0, Dialer: sec.Dialer(), MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for _, want := range []string{"one", "two"} {
		m, err := r.ReadMessage(ctx)
		testenv.Must(t, err, "consuming over SASL_SSL")
		if string(m.Value) != want {
			t.Fatalf("read %q, want %q", m.Value, want)
		}
	}

	refused := func(name string, c kafka.SecurityConfig) {
		t.Helper()
		s, err := kafka.LoadSecurity(c)
		testenv.Must(t, err, "loading "+name)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		bad := &kafkago.Client{Addr: kafkago.TCP(l.Brokers...), Timeout: 10 * time.Second, Transport: s.Transport()}
		if _, err := bad.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}}); err == nil {
			t.Errorf("%s: the broker answered", name)
		}
	}
	refused("a wrong password", kafka.SecurityConfig{CAFile: l.CAFile, SASLMechanism: "SCRAM-SHA-512", Username: l.Username, Password: l.Password + "x"})
	refused("a CA that did not sign the broker", kafka.SecurityConfig{CAFile: otherCA(t), SASLMechanism: "SCRAM-SHA-512", Username: l.Username, Password: l.Password})
	refused("the system's roots", kafka.SecurityConfig{TLS: true, SASLMechanism: "SCRAM-SHA-512", Username: l.Username, Password: l.Password})
}

func TestLoadSecurityRefusesIncompleteSettings(t *testing.T) {
	t.Parallel()
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	testenv.Must(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o644), "writing")
	for name, c := range map[string]kafka.SecurityConfig{
		"PLAIN without TLS":         {SASLMechanism: "PLAIN", Username: "u", Password: "p"},
		"SCRAM without a password":  {SASLMechanism: "SCRAM-SHA-512", Username: "u"},
		"credentials, no mechanism": {Username: "u", Password: "p"},
		"an unknown mechanism":      {SASLMechanism: "GSSAPI", Username: "u", Password: "p"},
		"a CA file without a cert":  {CAFile: notPEM},
		"a missing CA file":         {CAFile: filepath.Join(t.TempDir(), "none")},
		"a client cert without key": {CertFile: notPEM},
	} {
		if _, err := kafka.LoadSecurity(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s, err := kafka.LoadSecurity(kafka.SecurityConfig{})
	if err != nil || s.Enabled() || s.Transport() != nil || s.Dialer() != nil {
		t.Fatalf("plaintext: %+v %v", s, err)
	}
	s, err = kafka.LoadSecurity(kafka.SecurityConfig{TLS: true, SASLMechanism: "scram-sha-256", Username: "u", Password: "p"})
	if err != nil || s.TLS == nil || s.SASL == nil || !strings.HasPrefix(s.SASL.Name(), "SCRAM-SHA-256") {
		t.Fatalf("TLS and SCRAM: %+v %v", s, err)
	}
}
