package analytics_test

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rapportcrm/rapport/analytics"
)

func TestParseUUID(t *testing.T) {
	for _, s := range []string{
		"0190c6d2-0000-7000-8000-000000000000",
		"f47ac10b-58cc-4372-a567-0e02b2c3d479",
		"ffffffff-ffff-8fff-bfff-ffffffffffff",
	} {
		u, ok := analytics.ParseUUID(s)
		assert.True(t, ok, s)
		assert.Equal(t, strings.ReplaceAll(s, "-", ""), hex.EncodeToString(u[:]), s)
	}
	for _, s := range []string{
		"F47AC10B-58CC-4372-A567-0E02B2C3D479",  // upper case: another spelling
		"f47ac10b-58cc-0372-a567-0e02b2c3d479",  // version 0
		"f47ac10b-58cc-9372-a567-0e02b2c3d479",  // version 9
		"f47ac10b-58cc-4372-c567-0e02b2c3d479",  // another variant
		"f47ac10b-58cc-4372-a567-0e02b2c3d47g",  // not hex
		"f47ac10b58cc-4372-a567-0e02b2c3d4790",  // a dash misplaced
		"f47ac10b-58cc-4372-a567-0e02b2c3d479 ", // too long
		"u1",
	} {
		_, ok := analytics.ParseUUID(s)
		assert.False(t, ok, s)
	}
}

func TestRecordKeys(t *testing.T) {
	ids := []string{"f47ac10b-58cc-4372-a567-0e02b2c3d479", "u1", "F47AC10B-58CC-4372-A567-0E02B2C3D479", "u2", "u1", "0190c6d2-0000-7000-8000-000000000001"}
	back, distinct := analytics.RecordKeys(ids...)
	assert.Equal(t, ids, back, "every ID comes back as it was, UUID or not")
	assert.Equal(t, 5, distinct, "u1 twice is one key; the upper-case spelling is another")
}
