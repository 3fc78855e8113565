package group_test

import (
	"os"
	"testing"

	"github.com/ladder/ladder/pkg/laddertest"
)

// TestMain stops the Apache Kafka broker the tests shared (LADDER_TEST_KAFKA=real).
func TestMain(m *testing.M) { os.Exit(laddertest.Main(m)) }
