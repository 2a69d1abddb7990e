package loyaltytest_test

import (
	"fmt"

	"github.com/rapportcrm/rapport/loyalty/loyaltytest"
)

// RunFile runs a fixture file's cases; in a Go test, one line does the
// same for whole directories: loyaltytest.Run(t, "testdata/fixtures").
func ExampleRunFile() {
	results, err := loyaltytest.RunFile("../../examples/loyalty/fixtures/rewards.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range results {
		fmt.Println(r.Case, "passed:", r.Passed())
	}
	// Output:
	// rewards from the catalogue passed: true
	// below the minimum balance nothing can be redeemed passed: true
}
