package store

import (
	"testing"

	"github.com/mailtls/mailtls/internal/pgtest"
)

// TestMain stops the throwaway PostgreSQL of the tests that use one.
func TestMain(m *testing.M) { pgtest.Main(m) }
