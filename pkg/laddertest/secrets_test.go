package laddertest

import (
	"testing"
)

// TestSecretScanFinds: the scan finds a secret that was written, through a
// logger too, and nothing when none was.
func TestSecretScanFinds(t *testing.T) {
	s := &SecretScan{secrets: []string{"hunter2-Xq", "", "not-there"}}
	s.Printf("connecting as alice")
	if got := FindSecrets(s.String(), s.Secrets()); len(got) != 0 {
		t.Errorf("found %q in clean output", got)
	}
	log := s.Logger(t)
	log.Debug().Str("password", "hunter2-Xq").Msg("a leak at debug level")
	if got := FindSecrets(s.String(), s.Secrets()); len(got) != 1 || got[0] != "hunter2-Xq" {
		t.Errorf("found %q, want the leaked secret", got)
	}
}

func TestPKISecrets(t *testing.T) {
	p := NewPKI(t)
	if got := p.Secrets(); len(got) < 4 {
		t.Errorf("PKI secrets %d lines, want the key bodies", len(got))
	}
}
