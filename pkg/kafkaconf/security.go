package kafkaconf

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// SASL mechanisms ladder speaks (LADDER_SASL_MECHANISM).
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// Mechanisms lists the accepted values of LADDER_SASL_MECHANISM; empty turns SASL off.
var Mechanisms = []string{MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512}

// SASL authenticates ladder's connections to the brokers
// (LADDER_SASL_MECHANISM, LADDER_SASL_USERNAME, LADDER_SASL_PASSWORD,
// LADDER_SASL_PASSWORD_FILE).
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty turns SASL off.
	Mechanism string `split_words:"true" desc:"SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty turns SASL off"`
	// Username is required with a mechanism.
	Username string `split_words:"true" desc:"SASL user name"`
	// Password is required with a mechanism, unless PasswordFile is set. It
	// prints as *** and is never part of a log line or an error.
	Password Secret `split_words:"true" desc:"SASL password (printed as ***); or give LADDER_SASL_PASSWORD_FILE"`
	// PasswordFile names a file holding the password (a mounted secret);
	// one trailing newline is ignored. Read each time a configuration is built.
	PasswordFile string `split_words:"true" desc:"file holding the SASL password, instead of LADDER_SASL_PASSWORD"`
}

// TLS encrypts ladder's connections to the brokers and verifies them
// (LADDER_TLS_*).
type TLS struct {
	// Enabled turns TLS on. Without CAFile the system's CA bundle is trusted.
	Enabled bool `split_words:"true" default:"false" desc:"connect to the brokers with TLS"`
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates.
	CAFile string `split_words:"true" desc:"PEM file of the CAs that sign the brokers' certificates (default: the system's CAs)"`
	// CertFile and KeyFile are the client certificate and key for mutual
	// TLS, both or neither.
	CertFile string `split_words:"true" desc:"PEM client certificate for mutual TLS (with LADDER_TLS_KEY_FILE)"`
	KeyFile  string `split_words:"true" desc:"PEM private key of the client certificate"`
	// ServerName is the name expected in the brokers' certificates when it
	// differs from the host of the broker address.
	ServerName string `split_words:"true" desc:"name expected in the brokers' certificates (default: the broker's host)"`
	// InsecureSkipVerify accepts any broker certificate. For tests only: it
	// is logged as a warning.
	InsecureSkipVerify bool `split_words:"true" default:"false" desc:"do not verify the brokers' certificates (tests only; logged as a warning)"`
}

// Secret is a string that never prints: fmt, JSON, text encoders and
// zerolog's Interface all see *** (or nothing when it is empty). Convert it
// with string(s) where the value itself is needed.
type Secret string

const redacted = "***"

// String returns *** when the secret is set.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the secret.
func (s Secret) GoString() string { return fmt.Sprintf("kafkaconf.Secret(%q)", s.String()) }

// MarshalText keeps text and YAML encoders from writing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON keeps JSON encoders (and zerolog's Interface) from writing the secret.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// password returns the SASL password from PasswordFile or Password.
func (s SASL) password() (string, error) {
	if s.PasswordFile == "" {
		return string(s.Password), nil
	}
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		// The path error names the file and the reason, not the contents.
		return "", &FieldError{Var: "LADDER_SASL_PASSWORD_FILE", Value: s.PasswordFile,
			Accept: "a readable file holding the password (" + pathReason(err) + ")"}
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return "", &FieldError{Var: "LADDER_SASL_PASSWORD_FILE", Value: s.PasswordFile, Accept: "a file holding a non-empty password"}
	}
	return pw, nil
}

// pathReason is the reason of a file error without the path (which the
// FieldError shows already).
func pathReason(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// mechanism is Mechanism in upper case, as sarama and the brokers spell it.
func (s SASL) mechanism() string { return strings.ToUpper(strings.TrimSpace(s.Mechanism)) }

// validate checks the SASL settings and returns the password to use.
func (s SASL) validate() (string, error) {
	mech := s.mechanism()
	if mech == "" {
		switch {
		case s.Username != "":
			return "", &FieldError{Var: "LADDER_SASL_MECHANISM", Accept: "one of " + strings.Join(Mechanisms, ", ") + " when LADDER_SASL_USERNAME is set"}
		case s.Password != "" || s.PasswordFile != "":
			return "", &FieldError{Var: "LADDER_SASL_MECHANISM", Accept: "one of " + strings.Join(Mechanisms, ", ") + " when a SASL password is set"}
		}
		return "", nil
	}
	if !slices.Contains(Mechanisms, mech) {
		return "", &FieldError{Var: "LADDER_SASL_MECHANISM", Value: s.Mechanism, Accept: strings.Join(Mechanisms, ", ") + ", or empty for no SASL"}
	}
	if s.Username == "" {
		return "", &FieldError{Var: "LADDER_SASL_USERNAME", Accept: "a non-empty user name with LADDER_SASL_MECHANISM=" + mech}
	}
	if s.Password != "" && s.PasswordFile != "" {
		return "", &FieldError{Var: "LADDER_SASL_PASSWORD_FILE", Value: s.PasswordFile,
			Accept: "either LADDER_SASL_PASSWORD or LADDER_SASL_PASSWORD_FILE, not both"}
	}
	pw, err := s.password()
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", &FieldError{Var: "LADDER_SASL_PASSWORD", Accept: "a non-empty password with LADDER_SASL_MECHANISM=" + mech + " (or LADDER_SASL_PASSWORD_FILE)"}
	}
	if mech != MechanismPlain {
		// SCRAM normalizes the password with SASLprep; refuse one it cannot
		// take now rather than fail every login later. The error names the
		// rule, not the password.
		if _, err := scram.SHA256.NewClient(s.Username, pw, ""); err != nil {
			fe := &FieldError{Var: "LADDER_SASL_PASSWORD", Value: redacted, Accept: "a password and user name SCRAM's SASLprep accepts (" + err.Error() + ")"}
			if s.PasswordFile != "" {
				fe.Var, fe.Value = "LADDER_SASL_PASSWORD_FILE", s.PasswordFile
			}
			return "", fe
		}
	}
	return pw, nil
}

// config builds the TLS client configuration, or nil when TLS is off.
// Errors name the variable and file, never the file's contents.
func (t TLS) config() (*tls.Config, error) {
	if !t.Enabled {
		for v, set := range map[string]bool{
			"LADDER_TLS_CA_FILE":              t.CAFile != "",
			"LADDER_TLS_CERT_FILE":            t.CertFile != "",
			"LADDER_TLS_KEY_FILE":             t.KeyFile != "",
			"LADDER_TLS_SERVER_NAME":          t.ServerName != "",
			"LADDER_TLS_INSECURE_SKIP_VERIFY": t.InsecureSkipVerify,
		} {
			if set {
				return nil, &FieldError{Var: "LADDER_TLS_ENABLED", Value: "false", Accept: "true when " + v + " is set (or unset " + v + ")"}
			}
		}
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // an explicit, warned switch
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, &FieldError{Var: "LADDER_TLS_CA_FILE", Value: t.CAFile, Accept: "a readable PEM file of CA certificates (" + pathReason(err) + ")"}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &FieldError{Var: "LADDER_TLS_CA_FILE", Value: t.CAFile, Accept: "a PEM file of CA certificates (found no certificate in it)"}
		}
		tc.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return nil, &FieldError{Var: "LADDER_TLS_KEY_FILE", Accept: "the client key's PEM file, with LADDER_TLS_CERT_FILE"}
	case t.CertFile == "" && t.KeyFile != "":
		return nil, &FieldError{Var: "LADDER_TLS_CERT_FILE", Accept: "the client certificate's PEM file, with LADDER_TLS_KEY_FILE"}
	case t.CertFile != "":
		certPEM, err := os.ReadFile(t.CertFile)
		if err != nil {
			return nil, &FieldError{Var: "LADDER_TLS_CERT_FILE", Value: t.CertFile, Accept: "a readable PEM certificate (" + pathReason(err) + ")"}
		}
		keyPEM, err := os.ReadFile(t.KeyFile)
		if err != nil {
			return nil, &FieldError{Var: "LADDER_TLS_KEY_FILE", Value: t.KeyFile, Accept: "a readable PEM private key (" + pathReason(err) + ")"}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// crypto/tls's messages name what is wrong, not the bytes.
			return nil, &FieldError{Var: "LADDER_TLS_CERT_FILE", Value: t.CertFile,
				Accept: "a PEM certificate matching the private key in " + t.KeyFile + " (" + err.Error() + ")"}
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// applySecurity sets SASL and TLS on sc.
func (c Config) applySecurity(sc *sarama.Config) error {
	pw, err := c.SASL.validate()
	if err != nil {
		return err
	}
	tc, err := c.TLS.config()
	if err != nil {
		return err
	}
	remember(c)
	if tc != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = tc
	}
	mech := c.SASL.mechanism()
	if mech == "" {
		return nil
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Mechanism = sarama.SASLMechanism(mech)
	sc.Net.SASL.User = c.SASL.Username
	sc.Net.SASL.Password = pw
	sc.Net.SASL.Handshake = true
	switch mech {
	case MechanismSCRAMSHA256:
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha256.New} }
	case MechanismSCRAMSHA512:
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha512.New} }
	}
	return nil
}

// Warnings lists settings that work but weaken security, for the command to log.
func (c Config) Warnings() []string {
	var w []string
	if c.TLS.Enabled && c.TLS.InsecureSkipVerify {
		w = append(w, "LADDER_TLS_INSECURE_SKIP_VERIFY=true: the brokers' certificates are not verified; anyone on the path can read and change the traffic and the SASL credentials")
	}
	if c.SASL.mechanism() == MechanismPlain && !c.TLS.Enabled {
		w = append(w, "LADDER_SASL_MECHANISM=PLAIN without LADDER_TLS_ENABLED=true: the password crosses the network in clear text")
	}
	return w
}

// scramClient is sarama's SCRAM client, on github.com/xdg-go/scram.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	c, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return fmt.Errorf("preparing SCRAM for user %q: %w", user, err)
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }

func (s *scramClient) Done() bool { return s.conv.Done() }
