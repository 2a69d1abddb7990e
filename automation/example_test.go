package automation_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/rapportcrm/rapport/automation"
)

func ExampleLoad() {
	src := []byte(`automations:
  - name: welcome
    on: {event: contact.created}
    do:
      - activity: {type: call, subject: "Welcome {{.Contact.FirstName}}", due: 2d}
  - name: Renewal
    on:
      date: {of: contract, field: ends_on, offset: -30d}
    do:
      - webhook: {url: "ftp://crm.example.com/renewals", method: GET}
`)
	_, err := automation.Load("tenant.yaml", src, nil)
	var de *automation.DefinitionError
	if errors.As(err, &de) {
		for _, p := range de.Problems {
			fmt.Println(p)
		}
	}

	src = []byte(`automations:
  - name: welcome
    on: {event: contact.created}
    do:
      - activity: {type: call, subject: "Welcome {{.Contact.FirstName}}", due: 2d}
  - name: renewal
    on:
      date: {of: contract, field: ends_on, offset: -30d}
    do:
      - webhook: {url: "https://crm.example.com/renewals"}
`)
	set, err := automation.Load("tenant.yaml", src, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, a := range set.Automations {
		fmt.Printf("%s (line %d): %d action(s), first %s\n", a.Name, a.Line(), len(a.Do), a.Do[0].Kind())
	}
	// Output:
	// tenant.yaml:6: automation Renewal: name "Renewal": want lower-case letters, digits, '-' and '_', up to 63
	// tenant.yaml:10: automation Renewal: webhook: url "ftp://crm.example.com/renewals": want an http or https URL
	// tenant.yaml:10: automation Renewal: webhook: method "GET": want POST, PUT or PATCH
	// welcome (line 2): 1 action(s), first activity
	// renewal (line 6): 1 action(s), first webhook
}

func ExampleDateTrigger_Due() {
	set, err := automation.Builtin("renewal-reminder", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	trigger := set.Get("renewal-reminder").On.Date // 30 days before ends_on, at 09:00
	loc, _ := time.LoadLocation("Europe/Berlin")
	ends, _ := automation.ParseDate("2026-06-30", loc)

	for _, now := range []time.Time{
		time.Date(2026, 4, 1, 12, 0, 0, 0, loc),  // in good time
		time.Date(2026, 6, 20, 12, 0, 0, 0, loc), // entered late: due at once
		time.Date(2026, 7, 1, 12, 0, 0, 0, loc),  // the contract has ended
	} {
		occ, ok := trigger.Due(ends, time.Time{}, now, loc)
		if !ok {
			fmt.Println(now.Format(time.DateOnly), "nothing due")
			continue
		}
		fmt.Println(now.Format(time.DateOnly), "due", occ.At.Format(time.RFC3339), "for", occ.Date.Format(time.DateOnly))
	}
	// Output:
	// 2026-04-01 due 2026-05-31T09:00:00+02:00 for 2026-06-30
	// 2026-06-20 due 2026-06-20T12:00:00+02:00 for 2026-06-30
	// 2026-07-01 nothing due
}

func ExampleDateTrigger_Due_yearly() {
	set, err := automation.Load("birthdays.yaml", []byte(`automations:
  - name: birthday
    on: {date: {of: contact, field: custom.birthday, yearly: true, at: "10:00"}}
    do: [{points: {program: loyalty, points: 100}}]
`), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	trigger := set.Get("birthday").On.Date
	loc, _ := time.LoadLocation("Europe/Berlin")
	born, _ := automation.ParseDate("2000-02-29", loc)
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, loc)

	occ, _ := trigger.Due(born, time.Time{}, now, loc)
	fmt.Println(occ.At.Format(time.RFC3339))
	// Once it has run for that day, the next one is a leap year's.
	occ, _ = trigger.Due(born, occ.Date, occ.At, loc)
	fmt.Println(occ.At.Format(time.RFC3339))
	// Output:
	// 2027-02-28T10:00:00+01:00
	// 2028-02-29T10:00:00+01:00
}

func ExampleTrigger_Next() {
	set, err := automation.Load("digest.yaml", []byte(`automations:
  - name: monday-digest
    on: {schedule: "0 9 * * 1"}
    do: [{emit: {event: digest_due}}]
`), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	on := set.Get("monday-digest").On
	loc, _ := time.LoadLocation("Europe/Berlin")
	t := time.Date(2026, 3, 20, 0, 0, 0, 0, loc)
	for range 2 {
		t = on.Next(t, loc)
		fmt.Println(t.Format(time.RFC3339), "=", t.UTC().Format(time.TimeOnly), "UTC")
	}
	// Output:
	// 2026-03-23T09:00:00+01:00 = 08:00:00 UTC
	// 2026-03-30T09:00:00+02:00 = 07:00:00 UTC
}

func ExampleAutomation_Holds() {
	set, err := automation.Load("deals.yaml", []byte(`automations:
  - name: big-win
    on: {event: deal.stage_changed, to: won}
    when: record.amount.amount > 1000 && event.to == "won"
    do: [{tag: {add: [big-win]}}]
`), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	a := set.Get("big-win")
	ev := automation.EventInfo{Type: "deal.stage_changed", From: "contract", To: "won"}
	fmt.Println("matches:", a.MatchesEvent(ev))
	for _, amount := range []int{250, 4000} {
		ok, err := a.Holds(automation.Env{
			Record: map[string]any{"amount": map[string]any{"amount": amount}},
			Event:  ev,
		})
		fmt.Println(amount, ok, err)
	}
	// Output:
	// matches: true
	// 250 false <nil>
	// 4000 true <nil>
}

func ExampleDuration() {
	var d automation.Duration
	for _, s := range []string{"2d", "-30d", "1w", "36h", "1.5d"} {
		if err := d.UnmarshalText([]byte(s)); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(s, "=", time.Duration(d), "written", d)
	}
	// Output:
	// 2d = 48h0m0s written 2d
	// -30d = -720h0m0s written -30d
	// 1w = 168h0m0s written 7d
	// 36h = 36h0m0s written 36h0m0s
	// duration "1.5d": want a whole number of days or weeks, such as 3d or -30d
}

func ExampleBuiltins() {
	for _, name := range automation.Builtins() {
		set, err := automation.Builtin(name, nil)
		if err != nil {
			fmt.Println(name, err)
			continue
		}
		fmt.Println(name, len(set.Automations))
	}
	// Output:
	// birthday-greeting 1
	// deal-escalation 1
	// deal-next-step 5
	// lead-callback 1
	// order-thanks 1
	// renewal-reminder 1
	// win-back 1
}
