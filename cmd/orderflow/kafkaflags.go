package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"orderflow/internal/kafka"
)

// kafkaFlags are how every command that talks to Kafka reaches it securely: TLS with a CA and
// an optional client certificate, and SASL/SCRAM credentials.
type kafkaFlags struct {
	tls                    *bool
	ca, cert, key          *string
	mechanism, user        *string
	password, passwordFile *string
}

func addKafkaFlags(fs *flag.FlagSet, env *envDefaults, getenv func(string) string) *kafkaFlags {
	return &kafkaFlags{
		tls:          fs.Bool("kafka-tls", env.Bool("KAFKA_TLS", false), "connect to the brokers over TLS, verified against the system's roots or -kafka-ca-file (env KAFKA_TLS)"),
		ca:           fs.String("kafka-ca-file", getenv("KAFKA_CA_FILE"), "PEM CA the brokers' certificates must chain to; implies TLS (env KAFKA_CA_FILE)"),
		cert:         fs.String("kafka-cert-file", getenv("KAFKA_CERT_FILE"), "PEM client certificate for brokers that ask for one (env KAFKA_CERT_FILE)"),
		key:          fs.String("kafka-key-file", getenv("KAFKA_KEY_FILE"), "PEM key of the client certificate (env KAFKA_KEY_FILE)"),
		mechanism:    fs.String("kafka-sasl-mechanism", getenv("KAFKA_SASL_MECHANISM"), "SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN; empty for no SASL (env KAFKA_SASL_MECHANISM)"),
		user:         fs.String("kafka-username", getenv("KAFKA_USERNAME"), "SASL username (env KAFKA_USERNAME)"),
		password:     fs.String("kafka-password", getenv("KAFKA_PASSWORD"), "SASL password; prefer -kafka-password-file, which ps does not show (env KAFKA_PASSWORD)"),
		passwordFile: fs.String("kafka-password-file", getenv("KAFKA_PASSWORD_FILE"), "file holding the SASL password (env KAFKA_PASSWORD_FILE)"),
	}
}

// security builds the connection settings; a file that cannot be read or a mechanism without
// credentials is a usage error, never a silent fallback to plaintext.
func (f *kafkaFlags) security() (kafka.Security, error) {
	password := *f.password
	if *f.passwordFile != "" {
		if password != "" {
			return kafka.Security{}, fmt.Errorf("%w: set -kafka-password or -kafka-password-file, not both", errUsage)
		}
		b, err := os.ReadFile(*f.passwordFile)
		if err != nil {
			return kafka.Security{}, fmt.Errorf("%w: -kafka-password-file: %v", errUsage, err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	s, err := kafka.LoadSecurity(kafka.SecurityConfig{TLS: *f.tls, CAFile: *f.ca, CertFile: *f.cert, KeyFile: *f.key,
		SASLMechanism: *f.mechanism, Username: *f.user, Password: password})
	if err != nil {
		return s, fmt.Errorf("%w: %v", errUsage, err)
	}
	return s, nil
}
