package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQuickstartRuns(t *testing.T) {
	var out bytes.Buffer
	path := filepath.Join(t.TempDir(), "qs.db")
	require.NoError(t, run(context.Background(), &out, path))
	s := out.String()
	assert.Contains(t, s, "contacts tagged vip: 2")
	assert.Contains(t, s, "events delivered to the subscription: 5")
	assert.Contains(t, s, "refused a stale update")
	assert.Contains(t, s, `3 contacts, Wile E. Coyote is "Chief Genius" at version 2`)
	assert.FileExists(t, path)
}

func TestQuickstartRefusesExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qs.db")
	require.NoError(t, run(context.Background(), &bytes.Buffer{}, path))
	err := run(context.Background(), &bytes.Buffer{}, path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already exists")
}
