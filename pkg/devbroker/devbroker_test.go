package devbroker

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestStartRefusesBadSecurity: an unknown SASL mechanism, a user without a
// password and a TLS configuration without a certificate are refused
// before a broker starts.
func TestStartRefusesBadSecurity(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  Config
		says string
	}{
		"mechanism":   {Config{Users: []User{{Mechanism: "GSSAPI", Name: "u", Password: "p"}}}, "want a mechanism"},
		"no password": {Config{Users: []User{{Mechanism: "PLAIN", Name: "u"}}}, "a name and a password"},
		"no cert":     {Config{TLS: &tls.Config{}}, "no server certificate"},
	} {
		tc.cfg.Log = zerolog.Nop()
		b, err := Start(tc.cfg)
		if err == nil {
			b.Close()
			t.Errorf("%s: started", name)
			continue
		}
		if !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %q", name, err, tc.says)
		}
	}
}
