package automation_test

import (
	"fmt"
	"testing"

	"github.com/rapportcrm/rapport/automation"
)

func TestZZProbe(t *testing.T) {
	_, err := automation.Load("f.yaml", []byte(`automations:
  - name: a
    on: {inactivity: {after: 1x}}
    do:
      - activity: {subject: s, due: [1]}
  - name: b
    on: {inactivity: {after: 1000000d}}
    bogus: 1
    do: [{tag: {add: [x]}}]
`), nil)
	fmt.Printf("%v\n%#v\n", err, err)
}
