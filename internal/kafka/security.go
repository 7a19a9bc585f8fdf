package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Security is how a component reaches the brokers: TLS (verifying the brokers against a CA,
// presenting a client certificate when they ask for one) and SASL authentication. The zero
// value is a plaintext connection without authentication, as on the local stack's main
// listener.
type Security struct {
	TLS  *tls.Config
	SASL sasl.Mechanism
}

// Enabled reports whether s asks for TLS or SASL.
func (s Security) Enabled() bool { return s.TLS != nil || s.SASL != nil }

// Transport is the kafka-go transport for Clients and Writers: nil (kafka-go's default) when
// s is plaintext, so plaintext components keep exactly their defaults.
func (s Security) Transport() kafkago.RoundTripper {
	if !s.Enabled() {
		return nil
	}
	return &kafkago.Transport{TLS: s.TLS, SASL: s.SASL, DialTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, MetadataTTL: 6 * time.Second}
}

// Dialer is the kafka-go dialer for Readers: nil (kafka-go's default) when s is plaintext.
func (s Security) Dialer() *kafkago.Dialer {
	if !s.Enabled() {
		return nil
	}
	return &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: s.TLS, SASLMechanism: s.SASL}
}

// SecurityConfig is Security as an operator writes it: files and names.
type SecurityConfig struct {
	// TLS turns TLS on; a CA file or a client certificate implies it. Brokers are verified
	// against CAFile, or the system's roots without one; verification is never switched off.
	TLS      bool
	CAFile   string
	CertFile string
	KeyFile  string
	// SASLMechanism is "", "SCRAM-SHA-256", "SCRAM-SHA-512" or "PLAIN" (PLAIN only over TLS:
	// it sends the password as it is).
	SASLMechanism string
	Username      string
	Password      string
}

// LoadSecurity reads the files of c and builds the Security it describes.
func LoadSecurity(c SecurityConfig) (Security, error) {
	var s Security
	if c.TLS || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return s, fmt.Errorf("reading the Kafka CA: %w", err)
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return s, fmt.Errorf("reading the Kafka CA %s: no PEM certificate in it", c.CAFile)
			}
		}
		if (c.CertFile == "") != (c.KeyFile == "") {
			return s, errors.New("the Kafka client certificate needs both its certificate and its key file")
		}
		if c.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return s, fmt.Errorf("reading the Kafka client certificate: %w", err)
			}
			t.Certificates = []tls.Certificate{cert}
		}
		s.TLS = t
	}
	switch m := strings.ToUpper(c.SASLMechanism); m {
	case "":
		if c.Username != "" || c.Password != "" {
			return s, errors.New("kafka credentials without a SASL mechanism (SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN)")
		}
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.Username == "" || c.Password == "" {
			return s, fmt.Errorf("SASL %s needs a username and a password", m)
		}
		algo := scram.SHA512
		if m == "SCRAM-SHA-256" {
			algo = scram.SHA256
		}
		mech, err := scram.Mechanism(algo, c.Username, c.Password)
		if err != nil {
			return s, fmt.Errorf("preparing SASL %s: %w", m, err)
		}
		s.SASL = mech
	case "PLAIN":
		if s.TLS == nil {
			return s, errors.New("SASL PLAIN sends the password in clear: use it only with TLS")
		}
		if c.Username == "" || c.Password == "" {
			return s, errors.New("SASL PLAIN needs a username and a password")
		}
		s.SASL = plain.Mechanism{Username: c.Username, Password: c.Password}
	default:
		return s, fmt.Errorf("unknown SASL mechanism %q: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", c.SASLMechanism)
	}
	return s, nil
}

// OnTransport sets t's TLS and SASL from s and returns t, so the transports built by
// NewTransport (timeouts, keepalive) carry the connection's security too.
func (s Security) OnTransport(t *kafkago.Transport) *kafkago.Transport {
	t.TLS, t.SASL = s.TLS, s.SASL
	return t
}

// OnDialer sets d's TLS and SASL from s and returns d (see OnTransport).
func (s Security) OnDialer(d *kafkago.Dialer) *kafkago.Dialer {
	d.TLS, d.SASLMechanism = s.TLS, s.SASL
	return d
}
