package laddertest

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// SecretScan is an io.Writer that keeps everything a test printed or
// logged (loggers, process output, error messages) and, when the test ends,
// fails it if any of its secrets appears there.
type SecretScan struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	secrets []string
}

// ScanForSecrets returns a SecretScan for secrets that checks what was
// written to it when the test ends. Call it first in a test, so the check
// runs after the cleanups that stop processes and flush their output.
func ScanForSecrets(tb testing.TB, secrets ...string) *SecretScan {
	tb.Helper()
	s := &SecretScan{secrets: secrets}
	tb.Cleanup(func() {
		text := s.String()
		if text == "" {
			tb.Errorf("secret scan: the test captured no output, so the scan proved nothing")
			return
		}
		if found := FindSecrets(text, s.Secrets()); len(found) > 0 {
			tb.Errorf("secret scan: %d of %d secrets appear in the %d bytes the test printed and logged (lengths %v)",
				len(found), len(s.Secrets()), len(text), lengths(found))
			return
		}
		tb.Logf("secret scan: none of %d secrets in %d bytes of captured output", len(s.Secrets()), len(text))
	})
	return s
}

// Add registers more secrets to look for.
func (s *SecretScan) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = append(s.secrets, secrets...)
}

// Secrets returns the secrets looked for.
func (s *SecretScan) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.secrets...)
}

func (s *SecretScan) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// Printf records a line the test printed (an error message, say).
func (s *SecretScan) Printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.WriteString(strings.TrimSuffix(fmt.Sprintf(format, args...), "\n") + "\n")
}

// String returns everything captured so far.
func (s *SecretScan) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Logger is a logger writing every event to the scan, and warnings and
// errors to the test log too.
func (s *SecretScan) Logger(tb testing.TB) zerolog.Logger { return LoggerTo(tb, s) }

// FindSecrets returns the secrets that occur in text.
func FindSecrets(text string, secrets []string) []string {
	var found []string
	for _, sec := range secrets {
		if sec != "" && strings.Contains(text, sec) {
			found = append(found, sec)
		}
	}
	return found
}

// lengths describes found secrets without printing them.
func lengths(secrets []string) []int {
	out := make([]int, len(secrets))
	for i, s := range secrets {
		out[i] = len(s)
	}
	return out
}
