package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRulesTest(t *testing.T) {
	code, out, stderr := crmctl(t, "rules", "test", "../../examples/loyalty/fixtures")
	require.Equal(t, 0, code, out+stderr)
	assert.Contains(t, out, "PASS ../../examples/loyalty/fixtures/earning.yaml: beans earn double, gold earns 150%\n")
	assert.Regexp(t, `\n\d+ passed, 0 failed\n$`, out)

	code, out, _ = crmctl(t, "rules", "test", "../../loyalty/loyaltytest/testdata/wrong.yaml")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "FAIL ../../loyalty/loyaltytest/testdata/wrong.yaml: wrong balance and effect:\n  step 2: pending points of ann: want 4, got 0\n")
	assert.Contains(t, out, "    - base: order total 499 is below the minimum 500\n", "the trace of a failing case")
	assert.Contains(t, out, "1 passed, 3 failed\n")

	code, _, _ = crmctl(t, "rules", "test", "nowhere")
	assert.Equal(t, 1, code)
	code, _, _ = crmctl(t, "rules", "test")
	assert.Equal(t, 2, code)
}

func TestRulesCheck(t *testing.T) {
	code, out, _ := crmctl(t, "rules", "check", "../../examples/loyalty/coffee.yaml", "../../examples/loyalty/segments.yaml")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "coffee.yaml: ok (program beans: 7 rules, 3 tiers, 4 rewards, 4 discounts, 1 punch cards)\n")
	assert.Contains(t, out, "segments.yaml: ok (6 segments)\n")

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("name: x\ncurrency: EUR\nrules:\n  - name: r\n    on: [order]\n    points: count(order.lines, all(order.lines, all(order.lines, true)))\n"), 0o600))
	code, out, _ = crmctl(t, "rules", "check", bad)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "rule r.points (line 1, column")
	assert.Contains(t, out, "nested 3 predicates deep")
}

func TestRulesEval(t *testing.T) {
	doc := `{"member": {"tier": "gold", "tags": ["vip"], "spent": 120050, "birthday": "1990-06-20T00:00:00Z"}}`
	eval := func(rule string, extra ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		args := append([]string{"rules", "eval", "-rule", rule}, extra...)
		code := run(context.Background(), args, strings.NewReader(doc), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, stderr := eval(`member.tier == "gold" && hasTag(member.tags, "VIP")`)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "true\n", out)
	code, out, _ = eval(`member.spent / 100`)
	require.Equal(t, 0, code)
	assert.Equal(t, "1200.5\n", out)
	code, out, _ = eval(`age(member.birthday)`, "-now", "2026-06-19T00:00:00Z")
	require.Equal(t, 0, code)
	assert.Equal(t, "35\n", out)
	code, _, stderr = eval(`member.nope > 1`)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "rule eval (line 1, column")
	code, _, stderr = eval(`repeat("x", 1000)`)
	assert.Equal(t, 1, code)
	assert.NotEmpty(t, stderr)
	code, _, _ = eval(``)
	assert.Equal(t, 2, code)
}
