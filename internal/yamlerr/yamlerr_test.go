package yamlerr_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/rapportcrm/rapport/internal/yamlerr"
)

func TestProblems(t *testing.T) {
	var v struct {
		A int    `yaml:"a"`
		B string `yaml:"b"`
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte("a: x\nb: y\nc: 1\n")))
	dec.KnownFields(true)
	err := dec.Decode(&v)
	require.Error(t, err)
	got := yamlerr.Problems(err)
	require.Len(t, got, 2)
	assert.Equal(t, 1, got[0].Line)
	assert.Contains(t, got[0].Message, "cannot unmarshal !!str `x` into int")
	assert.Equal(t, 3, got[1].Line)
	assert.Contains(t, got[1].Message, "field c not found")

	err = yaml.Unmarshal([]byte("a: [1\n"), &v)
	require.Error(t, err)
	got = yamlerr.Problems(err)
	require.Len(t, got, 1)
	assert.NotContains(t, got[0].Message, "yaml:")
}
