package kafkaconf

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"
)

// testPassword is distinctive so that a search for it finds only leaks.
const testPassword = "pw-Unit-7fQ2zLx9"

func base() Config {
	return Config{Brokers: []string{"127.0.0.1:9092"}, KafkaVersion: "3.0.0", ClientID: "ladder"}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testCertFiles are a self-signed certificate and its key (testdata, made
// with openssl, ECDSA P-256), used only to check that files parse.
func testCertFiles(t *testing.T) (cert, key string) {
	t.Helper()
	return "testdata/cert.pem", "testdata/key.pem"
}

func TestEnvironmentNames(t *testing.T) {
	t.Setenv("LADDER_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("LADDER_SASL_USERNAME", "alice")
	t.Setenv("LADDER_SASL_PASSWORD", testPassword)
	t.Setenv("LADDER_SASL_PASSWORD_FILE", "/run/secrets/pw")
	t.Setenv("LADDER_TLS_ENABLED", "true")
	t.Setenv("LADDER_TLS_CA_FILE", "/tls/ca.crt")
	t.Setenv("LADDER_TLS_CERT_FILE", "/tls/tls.crt")
	t.Setenv("LADDER_TLS_KEY_FILE", "/tls/tls.key")
	t.Setenv("LADDER_TLS_SERVER_NAME", "kafka.svc")
	t.Setenv("LADDER_TLS_INSECURE_SKIP_VERIFY", "true")
	var c Config
	if err := envconfig.Process("ladder", &c); err != nil {
		t.Fatal(err)
	}
	want := Config{Brokers: []string{"127.0.0.1:9092"}, KafkaVersion: "3.0.0", ClientID: "ladder",
		SASL: SASL{Mechanism: "SCRAM-SHA-512", Username: "alice", Password: testPassword, PasswordFile: "/run/secrets/pw"},
		TLS:  TLS{Enabled: true, CAFile: "/tls/ca.crt", CertFile: "/tls/tls.crt", KeyFile: "/tls/tls.key", ServerName: "kafka.svc", InsecureSkipVerify: true}}
	if c.SASL != want.SASL || c.TLS != want.TLS {
		t.Errorf("read %+v, want %+v", c, want)
	}
	if err := envconfig.CheckDisallowed("ladder", &c); err != nil {
		t.Errorf("a documented variable is unknown to envconfig: %v", err)
	}
}

func TestValidateSecurity(t *testing.T) {
	cert, key := testCertFiles(t)
	ca := "testdata/cert.pem"
	notPEM := writeFile(t, "junk.crt", "not a certificate "+testPassword)
	pwFile := writeFile(t, "pw", testPassword+"\n")
	emptyPW := writeFile(t, "empty", "\n")
	missing := filepath.Join(t.TempDir(), "missing.pem")

	ok := map[string]func(*Config){
		"no security":    func(*Config) {},
		"PLAIN":          func(c *Config) { c.SASL = SASL{Mechanism: "PLAIN", Username: "u", Password: testPassword} },
		"scram-sha-256":  func(c *Config) { c.SASL = SASL{Mechanism: "scram-sha-256", Username: "u", Password: testPassword} },
		"SCRAM-SHA-512":  func(c *Config) { c.SASL = SASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: testPassword} },
		"password file":  func(c *Config) { c.SASL = SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: pwFile} },
		"TLS system CAs": func(c *Config) { c.TLS = TLS{Enabled: true} },
		"TLS CA":         func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: ca, ServerName: "kafka"} },
		"mutual TLS":     func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: ca, CertFile: cert, KeyFile: key} },
		"insecure":       func(c *Config) { c.TLS = TLS{Enabled: true, InsecureSkipVerify: true} },
	}
	for name, set := range ok {
		c := base()
		set(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}

	bad := []struct {
		name, varName, says string
		set                 func(*Config)
	}{
		{"unknown mechanism", "LADDER_SASL_MECHANISM", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
			func(c *Config) { c.SASL = SASL{Mechanism: "GSSAPI", Username: "u", Password: testPassword} }},
		{"username without mechanism", "LADDER_SASL_MECHANISM", "LADDER_SASL_USERNAME",
			func(c *Config) { c.SASL = SASL{Username: "u"} }},
		{"password without mechanism", "LADDER_SASL_MECHANISM", "password",
			func(c *Config) { c.SASL = SASL{Password: testPassword} }},
		{"no username", "LADDER_SASL_USERNAME", "user name",
			func(c *Config) { c.SASL = SASL{Mechanism: "PLAIN", Password: testPassword} }},
		{"password missing", "LADDER_SASL_PASSWORD", "non-empty password",
			func(c *Config) { c.SASL = SASL{Mechanism: "SCRAM-SHA-256", Username: "u"} }},
		{"password and file", "LADDER_SASL_PASSWORD_FILE", "not both",
			func(c *Config) {
				c.SASL = SASL{Mechanism: "PLAIN", Username: "u", Password: testPassword, PasswordFile: pwFile}
			}},
		{"password file missing", "LADDER_SASL_PASSWORD_FILE", "no such file",
			func(c *Config) { c.SASL = SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: missing} }},
		{"password file empty", "LADDER_SASL_PASSWORD_FILE", "non-empty",
			func(c *Config) { c.SASL = SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: emptyPW} }},
		{"password SASLprep refuses", "LADDER_SASL_PASSWORD", "SASLprep",
			func(c *Config) {
				c.SASL = SASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: testPassword + "\u0007"}
			}},
		{"CA file without TLS", "LADDER_TLS_ENABLED", "LADDER_TLS_CA_FILE",
			func(c *Config) { c.TLS = TLS{CAFile: ca} }},
		{"insecure without TLS", "LADDER_TLS_ENABLED", "LADDER_TLS_INSECURE_SKIP_VERIFY",
			func(c *Config) { c.TLS = TLS{InsecureSkipVerify: true} }},
		{"CA file missing", "LADDER_TLS_CA_FILE", "no such file",
			func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: missing} }},
		{"CA file not PEM", "LADDER_TLS_CA_FILE", "found no certificate",
			func(c *Config) { c.TLS = TLS{Enabled: true, CAFile: notPEM} }},
		{"cert without key", "LADDER_TLS_KEY_FILE", "LADDER_TLS_CERT_FILE",
			func(c *Config) { c.TLS = TLS{Enabled: true, CertFile: cert} }},
		{"key without cert", "LADDER_TLS_CERT_FILE", "LADDER_TLS_KEY_FILE",
			func(c *Config) { c.TLS = TLS{Enabled: true, KeyFile: key} }},
		{"cert file missing", "LADDER_TLS_CERT_FILE", "no such file",
			func(c *Config) { c.TLS = TLS{Enabled: true, CertFile: missing, KeyFile: key} }},
		{"key file missing", "LADDER_TLS_KEY_FILE", "no such file",
			func(c *Config) { c.TLS = TLS{Enabled: true, CertFile: cert, KeyFile: missing} }},
		{"cert file not PEM", "LADDER_TLS_CERT_FILE", notPEM,
			func(c *Config) { c.TLS = TLS{Enabled: true, CertFile: notPEM, KeyFile: key} }},
		{"key not matching", "LADDER_TLS_CERT_FILE", "does not match",
			func(c *Config) { c.TLS = TLS{Enabled: true, CertFile: cert, KeyFile: "testdata/other-key.pem"} }},
	}
	for _, tc := range bad {
		c := base()
		tc.set(&c)
		err := c.Validate()
		var fe *FieldError
		switch {
		case !errors.As(err, &fe):
			t.Errorf("%s: got %v, want a *FieldError", tc.name, err)
		case fe.Var != tc.varName || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "accepted:"):
			t.Errorf("%s: got %q, want %s and %q", tc.name, err, tc.varName, tc.says)
		}
		if err != nil && strings.Contains(err.Error(), testPassword) {
			t.Errorf("%s: the error shows the password or a file's contents: %s", tc.name, strings.ReplaceAll(err.Error(), testPassword, "<LEAK>"))
		}
		if _, berr := c.Base(); berr == nil || berr.Error() != err.Error() {
			t.Errorf("%s: Base returned %v, Validate %v", tc.name, berr, err)
		}
	}
}

func TestBaseAppliesSecurity(t *testing.T) {
	cert, key := testCertFiles(t)
	c := base()
	c.SASL = SASL{Mechanism: "scram-sha-512", Username: "alice", PasswordFile: writeFile(t, "pw", testPassword+"\r\n")}
	c.TLS = TLS{Enabled: true, CAFile: "testdata/cert.pem", CertFile: cert, KeyFile: key, ServerName: "kafka.svc"}
	for name, build := range map[string]func() (*sarama.Config, error){"Base": c.Base, "Producer": c.Producer, "Consumer": c.Consumer} {
		sc, err := build()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s := sc.Net.SASL
		if !s.Enable || s.Mechanism != sarama.SASLTypeSCRAMSHA512 || s.User != "alice" || s.Password != testPassword || s.SCRAMClientGeneratorFunc == nil || !s.Handshake {
			t.Errorf("%s: SASL %+v", name, s)
		}
		tc := sc.Net.TLS.Config
		if !sc.Net.TLS.Enable || tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "kafka.svc" || tc.InsecureSkipVerify {
			t.Errorf("%s: TLS %+v", name, sc.Net.TLS)
		}
		if err := sc.Validate(); err != nil {
			t.Errorf("%s: sarama refuses the configuration: %v", name, err)
		}
	}
	sc, err := base().Base()
	if err != nil || sc.Net.SASL.Enable || sc.Net.TLS.Enable {
		t.Errorf("without settings: SASL %v TLS %v (%v)", sc.Net.SASL.Enable, sc.Net.TLS.Enable, err)
	}
	// The SCRAM client speaks the first message of RFC 5802.
	sc, _ = c.Base()
	sc2 := sc.Net.SASL.SCRAMClientGeneratorFunc()
	if err := sc2.Begin("alice", testPassword, ""); err != nil {
		t.Fatal(err)
	}
	first, err := sc2.Step("")
	if err != nil || !strings.HasPrefix(first, "n,,n=alice,r=") || sc2.Done() {
		t.Errorf("SCRAM client-first %q, %v", first, err)
	}
}

func TestWarnings(t *testing.T) {
	c := base()
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings without security: %q", w)
	}
	c.TLS = TLS{Enabled: true, InsecureSkipVerify: true}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "LADDER_TLS_INSECURE_SKIP_VERIFY") {
		t.Errorf("insecure-skip-verify: %q", w)
	}
	c.TLS = TLS{}
	c.SASL = SASL{Mechanism: "PLAIN", Username: "u", Password: testPassword}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "clear text") {
		t.Errorf("PLAIN without TLS: %q", w)
	}
}

// TestPasswordNeverPrinted formats a configuration every way a log line or
// an error might, and looks for the password.
func TestPasswordNeverPrinted(t *testing.T) {
	c := base()
	c.SASL = SASL{Mechanism: "PLAIN", Username: "alice", Password: testPassword}
	c.TLS = TLS{Enabled: true, CAFile: "/tls/ca.crt"}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s %q\n", c, c, c, c, c)
	fmt.Fprintf(&out, "%v %+v %#v %s %q %x\n", c.SASL, c.SASL, c.SASL, c.SASL.Password, c.SASL.Password, c.SASL.Password)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(js)
	log := zerolog.New(&out)
	log.Info().Object("kafka", c).Msg("object")
	log.Info().Interface("kafka", c).Msg("interface")
	log.Info().Stringer("kafka", c).Msg("stringer")
	log.Info().Interface("password", c.SASL.Password).Msg("secret")
	text := out.String()
	if strings.Contains(text, testPassword) {
		t.Fatalf("the password is printed:\n%s", strings.ReplaceAll(text, testPassword, "<LEAK>"))
	}
	for _, want := range []string{"***", "alice", "sasl=PLAIN", `"sasl_password":"***"`, `"Password":"***"`} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %s:\n%s", want, text)
		}
	}
	if Secret("").String() != "" {
		t.Error("an empty secret prints as set")
	}
	if string(c.SASL.Password) != testPassword {
		t.Error("the secret lost its value")
	}
}

func TestExplain(t *testing.T) {
	eof := sarama.Wrap(sarama.ErrOutOfBrokers, io.EOF)
	sasl := base()
	sasl.SASL = SASL{Mechanism: "SCRAM-SHA-256", Username: "alice", Password: testPassword}
	err := sasl.Explain(fmt.Errorf("starting producer: %w", eof))
	if !errors.Is(err, ErrAuth) || !errors.Is(err, sarama.ErrOutOfBrokers) || !errors.Is(err, io.EOF) ||
		!strings.Contains(err.Error(), `SASL authentication failed for user "alice" with mechanism SCRAM-SHA-256`) ||
		!strings.Contains(err.Error(), "TLS/SASL settings do not match") || strings.Contains(err.Error(), testPassword) {
		t.Errorf("SASL: %v", err)
	}
	if again := sasl.Explain(err); again != err {
		t.Errorf("explained twice: %v", again)
	}

	tlsErr := sarama.Wrap(sarama.ErrOutOfBrokers, &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")})
	secure := sasl
	secure.TLS = TLS{Enabled: true, CAFile: "/tls/ca.crt"}
	for _, cause := range []error{tlsErr, sarama.Wrap(sarama.ErrOutOfBrokers, x509.UnknownAuthorityError{})} {
		err := secure.Explain(cause)
		if !errors.Is(err, ErrTLS) || errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "LADDER_TLS_CA_FILE=/tls/ca.crt") {
			t.Errorf("TLS failure: %v", err)
		}
	}
	plain := base()
	if err := plain.Explain(eof); !errors.Is(err, ErrNoBrokers) || errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "127.0.0.1:9092") {
		t.Errorf("no security: %v", err)
	}
	refused := sarama.Wrap(sarama.ErrOutOfBrokers, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")})
	if err := sasl.Explain(refused); !errors.Is(err, ErrNoBrokers) || errors.Is(err, ErrAuth) {
		t.Errorf("SASL configured, connection refused: %v", err)
	}
	kafkaSays := sarama.Wrap(sarama.ErrOutOfBrokers, sarama.ErrSASLAuthenticationFailed)
	if err := sasl.Explain(kafkaSays); !errors.Is(err, ErrAuth) {
		t.Errorf("SASL_AUTHENTICATION_FAILED from Kafka: %v", err)
	}
	other := errors.New("something else")
	if err := sasl.Explain(other); err != other {
		t.Errorf("unrelated error changed: %v", err)
	}

	// The package-level Explain knows the SASL settings of the last
	// configuration Base built for the same brokers.
	remembered := sasl
	remembered.Brokers = []string{"remembered:9092"}
	if _, err := remembered.Base(); err != nil {
		t.Fatal(err)
	}
	err = Explain(eof, []string{"remembered:9092"})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), `user "alice"`) {
		t.Errorf("Explain(err, brokers) after Base: %v", err)
	}
	if err := Explain(eof, []string{"unknown:9092"}); !errors.Is(err, ErrNoBrokers) {
		t.Errorf("Explain(err, brokers) without Base: %v", err)
	}
}
