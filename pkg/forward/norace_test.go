//go:build !race

package forward_test

import "testing"

// skipSaramaTxnRace: see race_test.go; without -race it skips nothing.
func skipSaramaTxnRace(*testing.T) {}
