package loyaltytest_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/loyalty/loyaltytest"
)

// TestExampleFixtures runs the fixtures shipped in examples/loyalty: one
// file per feature of a loyalty program.
func TestExampleFixtures(t *testing.T) {
	loyaltytest.Run(t, "../../examples/loyalty/fixtures")
}

func TestFailuresAreReported(t *testing.T) {
	results, err := loyaltytest.RunFile("testdata/wrong.yaml")
	require.NoError(t, err)
	require.Len(t, results, 4)

	r := results[0]
	require.False(t, r.Passed())
	assert.Equal(t, []string{
		"step 2: pending points of ann: want 4, got 0",
		"step 2: no effect like {kind: pending, source: base} among the last event's:\n  {kind: discount, source: threshold, member: ann, amount: 1000}",
	}, r.Failures)
	report := r.Report()
	assert.Contains(t, report, "trace of the last event:\n    - base: order total 499 is below the minimum 500\n")
	assert.Contains(t, report, "testdata/wrong.yaml: wrong balance and effect:")

	assert.Equal(t, []string{"step 1 failed: loyalty: insufficient points: member ann has 0 points, redeeming needs a balance of 100"}, results[1].Failures)
	assert.Equal(t, []string{`step 2: want an error containing "insufficient", the step before succeeded`}, results[2].Failures)
	assert.True(t, results[3].Passed())
}

func TestBadFixtures(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	for name, body := range map[string]string{
		"nothing.yaml":  "cases: [{name: x, steps: []}]\n",
		"nocases.yaml":  "program: ../../../examples/loyalty/coffee.yaml\n",
		"unknown.yaml":  "program: x.yaml\ncasez: []\n",
		"missing.yaml":  "program: nope.yaml\ncases: [{name: x, steps: [{expect: {}}]}]\n",
		"twosteps.yaml": "segments: " + abs(t, "../../examples/loyalty/segments.yaml") + "\ncases: [{name: x, steps: [{expect: {}, activate: 2026-01-01T00:00:00Z}]}]\n",
	} {
		_, err := loyaltytest.RunFile(write(name, body))
		require.ErrorIs(t, err, loyaltytest.ErrFixture, name)
	}
	_, err := loyaltytest.RunFile(filepath.Join(dir, "absent.yaml"))
	require.ErrorIs(t, err, loyaltytest.ErrFixture)
}

func abs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	require.NoError(t, err)
	return a
}
