package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAutomationsExample(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out))
	s := out.String()
	assert.Contains(t, s, "saved 7 automations")
	assert.Contains(t, s, `deal task: task "Send the proposal for Difference engine to Ada Lovelace" due 4 Dec 09:00`)
	assert.Contains(t, s, "dry run: next-step-contract would run=true")
	assert.Contains(t, s, "dry run: big-deal-review would run=true: [task \"Legal review of Difference engine (7500000 GBP minor units)\"")
	assert.Contains(t, s, `lead task: call "Call back Charles Babbage (Analytical Engines): waiting since 1 Dec 09:00" due 2 Dec 12:00`)
}
