package automation_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin without the system's zone files

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/automation"
)

// berlin is a time zone with a DST change on 29 March 2026.
func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	return loc
}

// mustLoad loads src as set.yaml and fails the test on any problem.
func mustLoad(t *testing.T, src string) *automation.Set {
	t.Helper()
	s, err := automation.Load("set.yaml", []byte(src), nil)
	require.NoError(t, err)
	require.NotNil(t, s)
	return s
}

// loadProblems loads src as set.yaml, which must be invalid, and returns
// its problems.
func loadProblems(t *testing.T, src string) []automation.Problem {
	t.Helper()
	s, err := automation.Load("set.yaml", []byte(src), nil)
	require.Error(t, err)
	assert.Nil(t, s)
	assert.ErrorIs(t, err, automation.ErrInvalid)
	var de *automation.DefinitionError
	require.ErrorAs(t, err, &de)
	require.NotEmpty(t, de.Problems)
	return de.Problems
}

// lineOf returns the 1-based line of src that contains mark.
func lineOf(t *testing.T, src, mark string) int {
	t.Helper()
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, mark) {
			return i + 1
		}
	}
	t.Fatalf("no %q in the source", mark)
	return 0
}

const validSet = `# every trigger and every action
automations:
  - name: deal-won
    description: thank the customer for a big deal
    on: {event: deal.stage_changed, from: contract, to: won}
    when: record.amount.amount > 1000 && event.to == "won"
    vars: {gift: mug}
    do:
      - activity: {type: call, subject: "Thank {{.Customer.Name}}", due: 2d, for: "role:account-manager"}
      - update: {set: {title: Won deal, custom.vip: true}}
      - move: {stage: delivery, reason: won}
      - assign: {to: "team:sales"}
      - tag: {add: [customer], remove: [prospect]}
      - points: {program: loyalty, points: -50, reason: correction}
      - message: {via: email, subject: Thanks, body: "Thank you"}
      - document: {template: invoice, via: email, format: pdf}
      - webhook: {url: "https://hooks.example.com/won", method: PUT, headers: {X-Token: abc}}
      - emit: {event: big_win}
  - name: weekly_digest
    disabled: true
    on: {schedule: "0 9 * * 1", for: deal}
    do:
      - activity: {subject: Weekly review}
  - name: renewal
    on:
      date: {of: contract, field: ends_on, offset: -30d}
    do:
      - message: {via: email, body: "Your contract ends soon"}
  - name: quiet
    on: {inactivity: {after: 1w}}
    do:
      - activity: {type: email, subject: Check in, for: manager}
  - name: entered
    on: {event: segment.entered, segment: at_risk}
    do:
      - tag: {add: [at-risk]}
`

func TestLoadValid(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, validSet)
	assert.Equal(t, "set.yaml", s.File())
	assert.True(t, s.Compiled())
	require.Len(t, s.Automations, 5)

	won := s.Get("deal-won")
	require.NotNil(t, won)
	assert.Same(t, &s.Automations[0], won)
	assert.Equal(t, lineOf(t, validSet, "name: deal-won"), won.Line())
	assert.Equal(t, "thank the customer for a big deal", won.Description)
	assert.Equal(t, "deal.stage_changed", won.On.Event)
	assert.Equal(t, "contract", won.On.From)
	assert.Equal(t, "won", won.On.To)
	assert.Equal(t, map[string]string{"gift": "mug"}, won.Vars)

	kinds := []string{"activity", "update", "move", "assign", "tag", "points", "message", "document", "webhook", "emit"}
	require.Len(t, won.Do, len(kinds))
	for i, k := range kinds {
		assert.Equal(t, k, won.Do[i].Kind(), "action %d", i)
		assert.Equal(t, lineOf(t, validSet, "- "+k+":"), won.Do[i].Line(), "action %d", i)
	}
	act := won.Do[0].Activity
	assert.Equal(t, automation.ActivityAction{Type: "call", Subject: "Thank {{.Customer.Name}}", Due: automation.Duration(48 * time.Hour), For: "role:account-manager"}, *act)
	assert.Equal(t, map[string]any{"title": "Won deal", "custom.vip": true}, won.Do[1].Update.Set)
	assert.Equal(t, int64(-50), won.Do[5].Points.Points)
	assert.Equal(t, map[string]string{"X-Token": "abc"}, won.Do[8].Webhook.Headers)

	digest := s.Get("weekly_digest")
	require.NotNil(t, digest)
	assert.True(t, digest.Disabled)
	assert.Equal(t, "deal", digest.On.For)

	renewal := s.Get("renewal")
	require.NotNil(t, renewal)
	require.NotNil(t, renewal.On.Date)
	assert.Equal(t, automation.Duration(-30*24*time.Hour), renewal.On.Date.Offset)
	assert.False(t, renewal.On.Date.Yearly)

	quiet := s.Get("quiet")
	require.NotNil(t, quiet)
	assert.Equal(t, automation.Duration(7*24*time.Hour), quiet.On.Inactivity.After)

	assert.Nil(t, s.Get("nope"))
}

func TestLoadJSON(t *testing.T) {
	t.Parallel()
	src := `{"automations": [
  {"name": "a", "on": {"event": "deal.created"}, "do": [{"tag": {"add": ["x"]}}]},
  {"name": "b", "on": {"event": "deal.created"},
   "do": [
     {"tag": {"add": ["y"]}},
     {"emit": {"event": "Bad"}}
   ]}
]}`
	problems := loadProblems(t, src)
	require.Len(t, problems, 1)
	assert.Equal(t, lineOf(t, src, `"Bad"`), problems[0].Line)
	assert.Equal(t, "b", problems[0].Automation)

	s := mustLoad(t, strings.Replace(src, `"Bad"`, `"good"`, 1))
	assert.Equal(t, lineOf(t, src, `"name": "b"`), s.Get("b").Line())
	assert.Equal(t, "good", s.Get("b").Do[1].Emit.Event)
}

// goodFirst is an automation the cases below put first, so that a
// problem's line must be that of the bad automation, not the first.
const goodFirst = `automations:
  - name: good
    on: {event: deal.created}
    do:
      - tag: {add: [fine]}
`

func TestLoadProblems(t *testing.T) {
	t.Parallel()
	// Each case is one bad automation, named bad unless the name is the
	// problem; "# <-" marks the line the problem must report.
	cases := []struct {
		name, src, want string
	}{
		// names
		{"bad name", `  - name: Bad Name # <-
    on: {event: deal.created}
    do: [{tag: {add: [x]}}]`, `name "Bad Name": want lower-case letters, digits, '-' and '_', up to 63`},
		{"name too long", `  - name: ` + strings.Repeat("a", 64) + ` # <-
    on: {event: deal.created}
    do: [{tag: {add: [x]}}]`, "up to 63"},
		{"empty name", `  - on: {event: deal.created} # <-
    do: [{tag: {add: [x]}}]`, `name "": want`},
		{"duplicate name", `  - name: good # <-
    on: {event: deal.updated}
    do: [{tag: {add: [x]}}]`, "the name is used twice"},

		// triggers
		{"no trigger", `  - name: bad # <-
    on: {}
    do: [{tag: {add: [x]}}]`, "on: want exactly one of event, schedule, date and inactivity, have 0"},
		{"two triggers", `  - name: bad # <-
    on: {event: deal.created, schedule: "@daily"}
    do: [{tag: {add: [x]}}]`, "on: want exactly one of event, schedule, date and inactivity, have 2"},
		{"bad event type", `  - name: bad # <-
    on: {event: DealCreated}
    do: [{tag: {add: [x]}}]`, `on: event "DealCreated": want entity.what, such as deal.stage_changed`},
		{"to on another event", `  - name: bad # <-
    on: {event: deal.created, to: won}
    do: [{tag: {add: [x]}}]`, "on: from and to go with a *.stage_changed event, not deal.created"},
		{"from on another event", `  - name: bad # <-
    on: {event: deal.updated, from: new}
    do: [{tag: {add: [x]}}]`, "on: from and to go with a *.stage_changed event, not deal.updated"},
		{"to on a schedule", `  - name: bad # <-
    on: {schedule: "@daily", to: won}
    do: [{tag: {add: [x]}}]`, "on: from, to and segment go with event"},
		{"segment on another event", `  - name: bad # <-
    on: {event: deal.created, segment: vip}
    do: [{tag: {add: [x]}}]`, "on: segment goes with segment.entered or segment.left, not deal.created"},
		{"for on an event", `  - name: bad # <-
    on: {event: deal.created, for: deal}
    do: [{tag: {add: [x]}}]`, "on: for goes with schedule"},
		{"for an unknown entity", `  - name: bad # <-
    on: {schedule: "@daily", for: invoice}
    do: [{tag: {add: [x]}}]`, `on: for "invoice": want one of contact, account, lead, deal, contract, case`},
		{"bad cron", `  - name: bad # <-
    on: {schedule: "61 * * * *"}
    do: [{tag: {add: [x]}}]`, `on: schedule "61 * * * *": end of range (61) above maximum (59)`},
		{"cron with too few fields", `  - name: bad # <-
    on: {schedule: "0 9 *"}
    do: [{tag: {add: [x]}}]`, `on: schedule "0 9 *": `},
		{"TZ in cron", `  - name: bad # <-
    on: {schedule: "TZ=Europe/Berlin 0 9 * * *"}
    do: [{tag: {add: [x]}}]`, `on: schedule "TZ=Europe/Berlin 0 9 * * *": schedules run in the tenant's time zone; leave out TZ`},
		{"CRON_TZ in cron", `  - name: bad # <-
    on: {schedule: "CRON_TZ=UTC 0 9 * * *"}
    do: [{tag: {add: [x]}}]`, "leave out TZ"},
		{"date of an unknown entity", `  - name: bad # <-
    on: {date: {of: invoice, field: due_on}}
    do: [{tag: {add: [x]}}]`, `on: date: of "invoice": want one of contact, account, lead, deal, contract, case`},
		{"date with a bad field", `  - name: bad # <-
    on: {date: {of: contract, field: Ends On}}
    do: [{tag: {add: [x]}}]`, `on: date: field "Ends On": want a JSON name such as ends_on or custom.birthday`},
		{"date field nested too deep", `  - name: bad # <-
    on: {date: {of: contact, field: custom.dates.birthday}}
    do: [{tag: {add: [x]}}]`, `field "custom.dates.birthday": want a JSON name`},
		{"offset not whole days", `  - name: bad # <-
    on: {date: {of: contract, field: ends_on, offset: 36h}}
    do: [{tag: {add: [x]}}]`, "on: date: offset 36h0m0s: want whole days"},
		{"at 25:00", `  - name: bad # <-
    on: {date: {of: contract, field: ends_on, at: "25:00"}}
    do: [{tag: {add: [x]}}]`, `on: date: at: "25:00": want HH:MM`},
		{"at without minutes", `  - name: bad # <-
    on: {date: {of: contract, field: ends_on, at: "9"}}
    do: [{tag: {add: [x]}}]`, `on: date: at: "9": want HH:MM`},
		{"inactivity after 0", `  - name: bad # <-
    on: {inactivity: {after: 0d}}
    do: [{tag: {add: [x]}}]`, "on: inactivity: after must be positive, such as 30d"},
		{"inactivity after negative", `  - name: bad # <-
    on: {inactivity: {after: -2d}}
    do: [{tag: {add: [x]}}]`, "on: inactivity: after must be positive"},
		{"inactivity without after", `  - name: bad # <-
    on: {inactivity: {}}
    do: [{tag: {add: [x]}}]`, "on: inactivity: after must be positive"},

		// conditions
		{"when calls an unknown function", `  - name: bad # <-
    on: {event: deal.created}
    when: nosuch(record.title)
    do: [{tag: {add: [x]}}]`, "when: rule bad (line 1, column 1): unknown name nosuch"},
		{"when is not boolean", `  - name: bad # <-
    on: {event: deal.created}
    when: 1 + 2
    do: [{tag: {add: [x]}}]`, "when: rule bad: expected bool, but got int"},
		{"when has a syntax error", `  - name: bad # <-
    on: {event: deal.created}
    when: record.amount >
    do: [{tag: {add: [x]}}]`, "when: rule bad"},
		{"when compares event.to with a number", `  - name: bad # <-
    on: {event: deal.created}
    when: event.to > 3
    do: [{tag: {add: [x]}}]`, "when: rule bad"},

		// actions
		{"no actions", `  - name: bad # <-
    on: {event: deal.created}`, "no actions (do)"},
		{"empty do", `  - name: bad # <-
    on: {event: deal.created}
    do: []`, "no actions (do)"},
		{"action with two kinds", `  - name: bad
    on: {event: deal.created}
    do:
      - tag: {add: [x]}
      - {tag: {add: [x]}, emit: {event: y}} # <-`, "an action needs exactly one of activity, update, move, assign, tag, points, message, document, webhook, emit; have 2"},
		{"action with no kind", `  - name: bad
    on: {event: deal.created}
    do:
      - {} # <-`, "an action needs exactly one of activity, update, move, assign, tag, points, message, document, webhook, emit; have 0"},
		{"activity bad type", `  - name: bad
    on: {event: deal.created}
    do:
      - activity: {type: lunch, subject: s} # <-`, `activity: type "lunch": want task, call, meeting or email`},
		{"activity empty subject", `  - name: bad
    on: {event: deal.created}
    do:
      - activity: {subject: "  "} # <-`, "activity: subject is required"},
		{"activity negative due", `  - name: bad
    on: {event: deal.created}
    do:
      - activity: {subject: s, due: -1d} # <-`, "activity: due -1d is negative"},
		{"activity for boss", `  - name: bad
    on: {event: deal.created}
    do:
      - activity: {subject: s, for: boss} # <-`, `activity: for: "boss": want owner, manager, user:ID, role:NAME or team:ID`},
		{"activity for user without id", `  - name: bad
    on: {event: deal.created}
    do:
      - activity: {subject: s, for: "user:"} # <-`, `activity: for: "user:": want owner`},
		{"update stage", `  - name: bad
    on: {event: deal.created}
    do:
      - update: {set: {stage: won}} # <-`, `update: field "stage" cannot be set by an automation`},
		{"update owner", `  - name: bad
    on: {event: deal.created}
    do:
      - update: {set: {owner: ann}} # <-`, `update: field "owner" cannot be set by an automation`},
		{"update id", `  - name: bad
    on: {event: deal.created}
    do:
      - update: {set: {id: x}} # <-`, `update: field "id" cannot be set by an automation`},
		{"update tags", `  - name: bad
    on: {event: deal.created}
    do:
      - update: {set: {tags: [a]}} # <-`, `update: field "tags" cannot be set by an automation`},
		{"update bad field name", `  - name: bad
    on: {event: deal.created}
    do:
      - update: {set: {Title: x}} # <-`, `update: field "Title": want a JSON name such as title or custom.vip`},
		{"update nothing", `  - name: bad
    on: {event: deal.created}
    do:
      - update: {set: {}} # <-`, "update: set names no field"},
		{"move without stage", `  - name: bad
    on: {event: deal.created}
    do:
      - move: {reason: r} # <-`, "move: stage is required"},
		{"assign to owner", `  - name: bad
    on: {event: deal.created}
    do:
      - assign: {to: owner} # <-`, "assign: to: want user:ID, role:NAME, team:ID or manager"},
		{"assign to boss", `  - name: bad
    on: {event: deal.created}
    do:
      - assign: {to: boss} # <-`, `assign: to: "boss": want owner, manager`},
		{"tag nothing", `  - name: bad
    on: {event: deal.created}
    do:
      - tag: {} # <-`, "tag: add or remove at least one tag"},
		{"empty tag", `  - name: bad
    on: {event: deal.created}
    do:
      - tag: {add: [ok], remove: [" "]} # <-`, "tag: empty tag"},
		{"points 0", `  - name: bad
    on: {event: deal.created}
    do:
      - points: {program: loyalty, points: 0} # <-`, "points: points must not be 0"},
		{"points without program", `  - name: bad
    on: {event: deal.created}
    do:
      - points: {points: 10} # <-`, "points: program is required"},
		{"message without via", `  - name: bad
    on: {event: deal.created}
    do:
      - message: {body: hello} # <-`, "message: via (the connector) is required"},
		{"message without body", `  - name: bad
    on: {event: deal.created}
    do:
      - message: {via: sms, body: " "} # <-`, "message: body is required"},
		{"document bad format", `  - name: bad
    on: {event: deal.created}
    do:
      - document: {template: invoice, via: email, format: docx} # <-`, `document: format "docx": want pdf or html`},
		{"document without template", `  - name: bad
    on: {event: deal.created}
    do:
      - document: {via: email} # <-`, "document: template and via are required"},
		{"webhook ftp URL", `  - name: bad
    on: {event: deal.created}
    do:
      - webhook: {url: "ftp://example.com/x"} # <-`, `webhook: url "ftp://example.com/x": want an http or https URL`},
		{"webhook URL without host", `  - name: bad
    on: {event: deal.created}
    do:
      - webhook: {url: "https:///x"} # <-`, `webhook: url "https:///x": want an http or https URL`},
		{"webhook relative URL", `  - name: bad
    on: {event: deal.created}
    do:
      - webhook: {url: "/hooks"} # <-`, `webhook: url "/hooks"`},
		{"webhook bad method", `  - name: bad
    on: {event: deal.created}
    do:
      - webhook: {url: "https://example.com", method: GET} # <-`, `webhook: method "GET": want POST, PUT or PATCH`},
		{"emit bad name", `  - name: bad
    on: {event: deal.created}
    do:
      - emit: {event: custom.Thing} # <-`, `emit: event "custom.Thing": want lower-case letters, digits and '_' (it is emitted as custom.NAME)`},

		// decoding
		{"unknown field of an automation", `  - name: bad
    on: {event: deal.created}
    bogus: 1 # <-
    do: [{tag: {add: [x]}}]`, "field bogus not found in type automation.Automation"},
		{"unknown field of an action", `  - name: bad
    on: {event: deal.created}
    do:
      - tag: {add: [x], colour: red} # <-`, "field colour not found in type automation.TagAction"},
		{"unknown field of a trigger", `  - name: bad
    on: {event: deal.created, stage: won} # <-
    do: [{tag: {add: [x]}}]`, "field stage not found in type automation.Trigger"},
		{"bad duration", `  - name: bad
    on: {inactivity: {after: 1x}} # <-
    do: [{tag: {add: [x]}}]`, `duration "1x": want a number and a unit (m, h, d, w), such as 24h or 3d`},
		{"duration that is not a scalar", `  - name: bad
    on: {event: deal.created}
    do:
      - activity: {subject: s, due: [1]} # <-`, "want a duration such as 24h or 3d"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := goodFirst + tc.src + "\n"
			problems := loadProblems(t, src)
			require.Len(t, problems, 1, "%v", problems)
			p := problems[0]
			assert.Equal(t, "set.yaml", p.File)
			assert.Equal(t, lineOf(t, src, "# <-"), p.Line)
			assert.Contains(t, p.Message, tc.want)
			assert.Contains(t, p.String(), "set.yaml:"+strconv.Itoa(p.Line)+": ")
		})
	}
}

func TestLoadProblemNamesTheAutomation(t *testing.T) {
	t.Parallel()
	src := goodFirst + `  - name: renewal
    on: {date: {of: contract, field: ends_on, at: "25:00"}}
    do: [{tag: {add: [x]}}]
`
	problems := loadProblems(t, src)
	require.Len(t, problems, 1)
	assert.Equal(t, automation.Problem{
		File:       "set.yaml",
		Line:       6,
		Automation: "renewal",
		Message:    `on: date: at: "25:00": want HH:MM`,
	}, problems[0])
	assert.Equal(t, `set.yaml:6: automation renewal: on: date: at: "25:00": want HH:MM`, problems[0].String())
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	src := `automations:
  - name: Bad # <-1
    on: {event: deal.created, schedule: "@daily"}
    do: [{tag: {add: [x]}}]
  - name: fine
    on: {event: deal.created}
    do: [{tag: {add: [x]}}]
  - name: two # <-2
    on: {date: {of: invoice, field: ends_on, offset: 1h, at: "25:00"}}
    when: 1 + 2
    do:
      - points: {program: loyalty, points: 0} # <-3
      - webhook: {url: "ftp://x", method: GET} # <-4
  - name: fine # <-5
    on: {event: deal.created}
`
	s, err := automation.Load("set.yaml", []byte(src), nil)
	require.ErrorIs(t, err, automation.ErrInvalid)
	assert.Nil(t, s)
	var de *automation.DefinitionError
	require.ErrorAs(t, err, &de)

	l1, l2, l3, l4, l5 := lineOf(t, src, "<-1"), lineOf(t, src, "<-2"), lineOf(t, src, "<-3"), lineOf(t, src, "<-4"), lineOf(t, src, "<-5")
	type got struct {
		Line       int
		Automation string
		Message    string
	}
	var all []got
	for _, p := range de.Problems {
		assert.Equal(t, "set.yaml", p.File)
		all = append(all, got{p.Line, p.Automation, p.Message})
	}
	assert.Equal(t, []got{
		{l1, "Bad", `name "Bad": want lower-case letters, digits, '-' and '_', up to 63`},
		{l1, "Bad", "on: want exactly one of event, schedule, date and inactivity, have 2"},
		{l2, "two", `on: date: of "invoice": want one of contact, account, lead, deal, contract, case`},
		{l2, "two", "on: date: offset 1h0m0s: want whole days"},
		{l2, "two", `on: date: at: "25:00": want HH:MM`},
		{l2, "two", "when: rule two: expected bool, but got int"},
		{l3, "two", "points: points must not be 0"},
		{l4, "two", `webhook: url "ftp://x": want an http or https URL`},
		{l4, "two", `webhook: method "GET": want POST, PUT or PATCH`},
		{l5, "fine", "the name is used twice"},
		{l5, "fine", "no actions (do)"},
	}, all)

	msg := err.Error()
	assert.True(t, strings.HasPrefix(msg, "automations are invalid:\n  set.yaml:"), msg)
	assert.Equal(t, len(de.Problems), strings.Count(msg, "\n  set.yaml:"))
}

func TestLoadReportsEveryDecodingProblem(t *testing.T) {
	t.Parallel()
	src := `automations:
  - name: a
    on: {inactivity: {after: soon}} # <-1
    do:
      - activity: {subject: s, due: later} # <-2
  - name: b
    colour: red # <-3
    on: {event: deal.created}
    do: [{tag: {add: [x]}}]
`
	problems := loadProblems(t, src)
	require.Len(t, problems, 3, "%v", problems)
	for i, p := range problems {
		assert.Equal(t, lineOf(t, src, "<-"+strconv.Itoa(i+1)), p.Line, "problem %d: %v", i, p)
		assert.Equal(t, "set.yaml", p.File)
	}
	assert.Contains(t, problems[0].Message, `duration "soon"`)
	assert.Contains(t, problems[1].Message, `duration "later"`)
	assert.Contains(t, problems[2].Message, "field colour not found")
}

func TestLoadBadDocuments(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src string
		want      automation.Problem
	}{
		{"empty", "", automation.Problem{File: "set.yaml", Message: "the file is empty"}},
		{"only a comment", "# nothing yet\n", automation.Problem{File: "set.yaml", Message: "the file is empty"}},
		{"a list", "- a\n", automation.Problem{File: "set.yaml", Line: 1, Message: "cannot unmarshal !!seq into automation.Set"}},
		{"automations is a number", "automations: 3\n", automation.Problem{File: "set.yaml", Line: 1, Message: "cannot unmarshal !!int `3` into []automation.Automation"}},
		{"unknown top-level field", "automations: []\nrules: []\n", automation.Problem{File: "set.yaml", Line: 2, Message: "field rules not found in type automation.Set"}},
		{"syntax error", "automations:\n  - name: a\n    on: [\n", automation.Problem{File: "set.yaml", Line: 3, Message: "did not find expected node content"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			problems := loadProblems(t, tc.src)
			assert.Equal(t, []automation.Problem{tc.want}, problems)
		})
	}
}

func TestLoadClock(t *testing.T) {
	t.Parallel()
	src := `automations:
  - name: future
    on: {event: deal.created}
    when: now().Year() == 2030
    do: [{tag: {add: [x]}}]
`
	clock := func() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) }
	s, err := automation.Load("set.yaml", []byte(src), clock)
	require.NoError(t, err)
	ok, err := s.Get("future").Holds(automation.Env{})
	require.NoError(t, err)
	assert.True(t, ok, "now() must be the clock given to Load")

	s = mustLoad(t, src) // nil clock: time.Now
	ok, err = s.Get("future").Holds(automation.Env{})
	require.NoError(t, err)
	assert.Equal(t, time.Now().Year() == 2030, ok)
}

func TestCompile(t *testing.T) {
	t.Parallel()
	s := &automation.Set{Automations: []automation.Automation{{
		Name: "welcome",
		On:   automation.Trigger{Event: "contact.created"},
		When: `contact.email != nil`,
		Do:   []automation.Action{{Tag: &automation.TagAction{Add: []string{"new"}}}},
	}}}
	assert.False(t, s.Compiled())
	require.NoError(t, s.Compile(nil))
	assert.True(t, s.Compiled())
	assert.Empty(t, s.File())
	assert.Zero(t, s.Get("welcome").Line())
	ok, err := s.Get("welcome").Holds(automation.Env{Contact: map[string]any{"email": "a@example.com"}})
	require.NoError(t, err)
	assert.True(t, ok)

	// A set made invalid after compiling no longer counts as compiled.
	s.Automations[0].Do = nil
	err = s.Compile(nil)
	require.ErrorIs(t, err, automation.ErrInvalid)
	assert.False(t, s.Compiled())
	var de *automation.DefinitionError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, []automation.Problem{{Automation: "welcome", Message: "no actions (do)"}}, de.Problems)
	assert.Equal(t, "automations are invalid:\n  automation welcome: no actions (do)", err.Error())
}

func TestProblemString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		p    automation.Problem
		want string
	}{
		{automation.Problem{File: "a.yaml", Line: 3, Automation: "x", Message: "m"}, "a.yaml:3: automation x: m"},
		{automation.Problem{File: "a.yaml", Message: "m"}, "a.yaml: m"},
		{automation.Problem{Line: 3, Message: "m"}, "line 3: m"},
		{automation.Problem{Line: 3, Automation: "x", Message: "m"}, "line 3: automation x: m"},
		{automation.Problem{Message: "m"}, "m"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, tc.p.String())
	}
	err := &automation.DefinitionError{Problems: []automation.Problem{cases[0].p, cases[1].p}}
	assert.Equal(t, "automations are invalid:\n  a.yaml:3: automation x: m\n  a.yaml: m", err.Error())
	assert.True(t, errors.Is(err, automation.ErrInvalid))
	assert.False(t, errors.Is(err, errors.New("automation: invalid definition")))
}

func TestActionKind(t *testing.T) {
	t.Parallel()
	cases := map[string]automation.Action{
		"activity": {Activity: &automation.ActivityAction{}},
		"update":   {Update: &automation.UpdateAction{}},
		"move":     {Move: &automation.MoveAction{}},
		"assign":   {Assign: &automation.AssignAction{}},
		"tag":      {Tag: &automation.TagAction{}},
		"points":   {Points: &automation.PointsAction{}},
		"message":  {Message: &automation.MessageAction{}},
		"document": {Document: &automation.DocumentAction{}},
		"webhook":  {Webhook: &automation.WebhookAction{}},
		"emit":     {Emit: &automation.EmitAction{}},
		"":         {},
	}
	for want, a := range cases {
		assert.Equal(t, want, a.Kind())
	}
}

func TestDurationUnmarshalText(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	good := []struct {
		in   string
		want time.Duration
	}{
		{"2d", 2 * day},
		{"-30d", -30 * day},
		{"0d", 0},
		{"1w", 7 * day},
		{"-2w", -14 * day},
		{"36h", 36 * time.Hour},
		{"90m", 90 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{" 3d ", 3 * day},
		{"106751d", 106751 * day},
	}
	for _, tc := range good {
		var d automation.Duration
		require.NoError(t, d.UnmarshalText([]byte(tc.in)), tc.in)
		assert.Equal(t, tc.want, time.Duration(d), tc.in)
	}
	bad := []struct{ in, want string }{
		{"", `duration "": want a number and a unit (m, h, d, w), such as 24h or 3d`},
		{"soon", `duration "soon": want a number and a unit`},
		{"2x", `duration "2x": want a number and a unit`},
		{"30", `duration "30": want a number and a unit`},
		{"d", `duration "d": want a whole number of days or weeks, such as 3d or -30d`},
		{"1.5d", `duration "1.5d": want a whole number of days or weeks`},
		{"2 w", `duration "2 w": want a whole number of days or weeks`},
		{"99999999999d", `duration "99999999999d": want a whole number of days or weeks`},
		{"106752d", `duration "106752d": too large`},
		{"-1000000d", `duration "-1000000d": too large`},
		{"20000w", `duration "20000w": too large`},
	}
	for _, tc := range bad {
		d := automation.Duration(time.Hour)
		err := d.UnmarshalText([]byte(tc.in))
		require.Error(t, err, tc.in)
		assert.Contains(t, err.Error(), tc.want)
		assert.Equal(t, automation.Duration(time.Hour), d, "a bad value leaves the duration as it was")
	}
}

func TestDurationString(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	cases := []struct {
		d    time.Duration
		want string
	}{
		{2 * day, "2d"},
		{-30 * day, "-30d"},
		{7 * day, "7d"},
		{36 * time.Hour, "36h0m0s"},
		{90 * time.Minute, "1h30m0s"},
		{-time.Hour, "-1h0m0s"},
		{0, "0s"},
	}
	for _, tc := range cases {
		d := automation.Duration(tc.d)
		assert.Equal(t, tc.want, d.String())
		b, err := d.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, tc.want, string(b))

		var back automation.Duration
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, d, back, "round trip of %s", tc.want)

		j, err := json.Marshal(d)
		require.NoError(t, err)
		assert.Equal(t, `"`+tc.want+`"`, string(j))
		back = 0
		require.NoError(t, json.Unmarshal(j, &back))
		assert.Equal(t, d, back)
	}
}

func TestMatchesEvent(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, `automations:
  - name: stage
    on: {event: deal.stage_changed}
    do: [{tag: {add: [x]}}]
  - name: any-deal
    on: {event: deal.*}
    do: [{tag: {add: [x]}}]
  - name: to-won
    on: {event: deal.stage_changed, to: won}
    do: [{tag: {add: [x]}}]
  - name: from-contract-to-won
    on: {event: deal.stage_changed, from: contract, to: won}
    do: [{tag: {add: [x]}}]
  - name: at-risk
    on: {event: segment.entered, segment: at_risk}
    do: [{tag: {add: [x]}}]
  - name: any-segment
    on: {event: segment.entered}
    do: [{tag: {add: [x]}}]
  - name: off
    disabled: true
    on: {event: deal.stage_changed}
    do: [{tag: {add: [x]}}]
  - name: daily
    on: {schedule: "@daily"}
    do: [{tag: {add: [x]}}]
  - name: renewal
    on: {date: {of: contract, field: ends_on}}
    do: [{tag: {add: [x]}}]
  - name: quiet
    on: {inactivity: {after: 30d}}
    do: [{tag: {add: [x]}}]
`)
	type ev = automation.EventInfo
	cases := []struct {
		auto string
		ev   ev
		want bool
	}{
		{"stage", ev{Type: "deal.stage_changed", From: "new", To: "won"}, true},
		{"stage", ev{Type: "deal.created"}, false},
		{"stage", ev{Type: "lead.stage_changed"}, false},
		{"stage", ev{Type: "deal.stage_changed_x"}, false},
		{"any-deal", ev{Type: "deal.created"}, true},
		{"any-deal", ev{Type: "deal.stage_changed", To: "won"}, true},
		{"any-deal", ev{Type: "dealer.created"}, false},
		{"any-deal", ev{Type: "contact.created"}, false},
		{"to-won", ev{Type: "deal.stage_changed", From: "contract", To: "won"}, true},
		{"to-won", ev{Type: "deal.stage_changed", From: "won", To: "lost"}, false},
		{"to-won", ev{Type: "deal.stage_changed"}, false},
		{"from-contract-to-won", ev{Type: "deal.stage_changed", From: "contract", To: "won"}, true},
		{"from-contract-to-won", ev{Type: "deal.stage_changed", From: "proposal", To: "won"}, false},
		{"from-contract-to-won", ev{Type: "deal.stage_changed", From: "contract", To: "lost"}, false},
		{"at-risk", ev{Type: "segment.entered", Segment: "at_risk"}, true},
		{"at-risk", ev{Type: "segment.entered", Segment: "vip"}, false},
		{"at-risk", ev{Type: "segment.left", Segment: "at_risk"}, false},
		{"any-segment", ev{Type: "segment.entered", Segment: "vip"}, true},
		{"off", ev{Type: "deal.stage_changed"}, false},
		{"daily", ev{Type: "schedule"}, false},
		{"daily", ev{Type: ""}, false},
		{"renewal", ev{Type: "date"}, false},
		{"quiet", ev{Type: "inactivity"}, false},
	}
	for _, tc := range cases {
		a := s.Get(tc.auto)
		require.NotNil(t, a, tc.auto)
		assert.Equal(t, tc.want, a.MatchesEvent(tc.ev), "%s on %+v", tc.auto, tc.ev)
	}

	// The same automation enabled matches.
	off := *s.Get("off")
	off.Disabled = false
	assert.True(t, off.MatchesEvent(ev{Type: "deal.stage_changed"}))
}

func TestHolds(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, `automations:
  - name: big-win
    on: {event: deal.stage_changed, to: won}
    when: record.amount.amount > 1000 && event.to == "won"
    do: [{tag: {add: [x]}}]
  - name: vip-contact
    on: {event: deal.created}
    when: contact.custom.vip == true
    do: [{tag: {add: [x]}}]
  - name: offer
    on: {event: deal.created}
    when: vars.discount == "15%"
    vars: {discount: "15%"}
    do: [{tag: {add: [x]}}]
  - name: title-changed
    on: {event: deal.updated}
    when: '"title" in event.changed && event.depth == 0 && event.type == "deal.updated"'
    do: [{tag: {add: [x]}}]
  - name: segment
    on: {event: segment.entered}
    when: event.segment == "vip" && event.from == ""
    do: [{tag: {add: [x]}}]
  - name: always
    on: {event: deal.created}
    do: [{tag: {add: [x]}}]
`)
	amount := func(n any) map[string]any {
		return map[string]any{"amount": map[string]any{"amount": n, "currency": "EUR"}}
	}
	won := automation.EventInfo{Type: "deal.stage_changed", From: "contract", To: "won"}
	cases := []struct {
		name, auto string
		env        automation.Env
		want       bool
		wantErr    string
	}{
		{"big deal won", "big-win", automation.Env{Record: amount(2000), Event: won}, true, ""},
		{"big deal won, float amount", "big-win", automation.Env{Record: amount(1000.5), Event: won}, true, ""},
		{"amount at the limit", "big-win", automation.Env{Record: amount(1000), Event: won}, false, ""},
		{"small deal", "big-win", automation.Env{Record: amount(500), Event: won}, false, ""},
		{"big deal lost", "big-win", automation.Env{Record: amount(2000), Event: automation.EventInfo{Type: "deal.stage_changed", To: "lost"}}, false, ""},
		{"no record", "big-win", automation.Env{Event: won}, false, "cannot fetch amount from <nil>"},
		{"amount is text", "big-win", automation.Env{Record: amount("lots"), Event: won}, false, "invalid operation"},
		{"vip contact", "vip-contact", automation.Env{Contact: map[string]any{"custom": map[string]any{"vip": true}}}, true, ""},
		{"plain contact", "vip-contact", automation.Env{Contact: map[string]any{"custom": map[string]any{"vip": false}}}, false, ""},
		{"vars default to the automation's", "offer", automation.Env{}, true, ""},
		{"vars given", "offer", automation.Env{Vars: map[string]string{"discount": "5%"}}, false, ""},
		{"vars given empty", "offer", automation.Env{Vars: map[string]string{}}, false, ""},
		{"title changed by a person", "title-changed", automation.Env{Event: automation.EventInfo{Type: "deal.updated", Changed: []string{"amount", "title"}}}, true, ""},
		{"title changed by an automation", "title-changed", automation.Env{Event: automation.EventInfo{Type: "deal.updated", Changed: []string{"title"}, Depth: 1}}, false, ""},
		{"other field changed", "title-changed", automation.Env{Event: automation.EventInfo{Type: "deal.updated", Changed: []string{"amount"}}}, false, ""},
		{"segment", "segment", automation.Env{Event: automation.EventInfo{Type: "segment.entered", Segment: "vip"}}, true, ""},
		{"other segment", "segment", automation.Env{Event: automation.EventInfo{Type: "segment.entered", Segment: "at_risk"}}, false, ""},
		{"no condition", "always", automation.Env{}, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := s.Get(tc.auto)
			require.NotNil(t, a)
			ok, err := a.Holds(tc.env)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				assert.False(t, ok)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, ok)
		})
	}
}

func TestHoldsNotCompiled(t *testing.T) {
	t.Parallel()
	a := &automation.Automation{Name: "raw", When: "true"}
	ok, err := a.Holds(automation.Env{})
	require.Error(t, err)
	assert.False(t, ok)
	assert.Equal(t, "automation raw: the set is not compiled", err.Error())

	// Without a condition there is nothing to compile.
	ok, err = (&automation.Automation{Name: "raw"}).Holds(automation.Env{})
	require.NoError(t, err)
	assert.True(t, ok)
}

func TestTriggerNext(t *testing.T) {
	t.Parallel()
	loc := berlin(t)
	s := mustLoad(t, `automations:
  - name: monday
    on: {schedule: "0 9 * * 1"}
    do: [{tag: {add: [x]}}]
  - name: daily
    on: {schedule: "@daily"}
    do: [{tag: {add: [x]}}]
  - name: event
    on: {event: deal.created}
    do: [{tag: {add: [x]}}]
  - name: date
    on: {date: {of: contract, field: ends_on}}
    do: [{tag: {add: [x]}}]
`)
	monday := s.Get("monday").On
	cases := []struct {
		name          string
		after, want   time.Time
		wantUTCHour   int
		wantUTCOffset int
	}{
		// Winter time (CET, UTC+1): 09:00 is 08:00 UTC.
		{"before the DST change", time.Date(2026, 3, 20, 12, 0, 0, 0, loc), time.Date(2026, 3, 23, 9, 0, 0, 0, loc), 8, 3600},
		// DST starts on Sunday 29 March 2026: the next Monday 09:00 is
		// CEST (UTC+2), 07:00 UTC, not 08:00.
		{"across the DST change", time.Date(2026, 3, 27, 12, 0, 0, 0, loc), time.Date(2026, 3, 30, 9, 0, 0, 0, loc), 7, 7200},
		{"on a Monday before 09:00", time.Date(2026, 3, 30, 8, 59, 0, 0, loc), time.Date(2026, 3, 30, 9, 0, 0, 0, loc), 7, 7200},
		{"on a Monday at 09:00", time.Date(2026, 3, 30, 9, 0, 0, 0, loc), time.Date(2026, 4, 6, 9, 0, 0, 0, loc), 7, 7200},
		// after is given in UTC: the schedule still runs in loc.
		{"after given in UTC", time.Date(2026, 3, 30, 7, 30, 0, 0, time.UTC), time.Date(2026, 4, 6, 9, 0, 0, 0, loc), 7, 7200},
		{"after given in UTC, before it", time.Date(2026, 3, 30, 6, 30, 0, 0, time.UTC), time.Date(2026, 3, 30, 9, 0, 0, 0, loc), 7, 7200},
	}
	for _, tc := range cases {
		got := monday.Next(tc.after, loc)
		assert.True(t, got.Equal(tc.want), "%s: got %v, want %v", tc.name, got, tc.want)
		assert.Equal(t, loc, got.Location(), tc.name)
		assert.Equal(t, tc.wantUTCHour, got.UTC().Hour(), tc.name)
		_, off := got.Zone()
		assert.Equal(t, tc.wantUTCOffset, off, tc.name)
	}

	// The same schedule in another zone is due at its 09:00.
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	got := monday.Next(time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC), ny)
	assert.True(t, got.Equal(time.Date(2026, 3, 30, 9, 0, 0, 0, ny)), "got %v", got)

	daily := s.Get("daily").On
	got = daily.Next(time.Date(2026, 3, 28, 12, 0, 0, 0, loc), loc)
	assert.True(t, got.Equal(time.Date(2026, 3, 29, 0, 0, 0, 0, loc)), "got %v", got)
	got = daily.Next(time.Date(2026, 3, 29, 0, 0, 0, 0, loc), loc)
	assert.True(t, got.Equal(time.Date(2026, 3, 30, 0, 0, 0, 0, loc)), "got %v", got)
	// Midnight in Berlin is 22:00 UTC the day before in summer.
	assert.Equal(t, 22, got.UTC().Hour())

	assert.True(t, s.Get("event").On.Next(time.Now(), loc).IsZero())
	assert.True(t, s.Get("date").On.Next(time.Now(), loc).IsZero())
	// An uncompiled schedule has no next time either.
	raw := automation.Trigger{Schedule: "@daily"}
	assert.True(t, raw.Next(time.Now(), loc).IsZero())
}

func TestParseDate(t *testing.T) {
	t.Parallel()
	loc := berlin(t)
	good := []struct {
		in   string
		want time.Time
	}{
		{"2026-06-30", time.Date(2026, 6, 30, 0, 0, 0, 0, loc)},
		{"2000-02-29", time.Date(2000, 2, 29, 0, 0, 0, 0, loc)},
		{"2026-06-30T10:00:00+02:00", time.Date(2026, 6, 30, 0, 0, 0, 0, loc)},
		// 23:30 UTC is already 1 July in Berlin: the day is taken in loc.
		{"2026-06-30T23:30:00Z", time.Date(2026, 7, 1, 0, 0, 0, 0, loc)},
		{"2026-06-30T23:30:00.5-07:00", time.Date(2026, 7, 1, 0, 0, 0, 0, loc)},
	}
	for _, tc := range good {
		got, ok := automation.ParseDate(tc.in, loc)
		require.True(t, ok, tc.in)
		assert.True(t, got.Equal(tc.want), "%s: got %v, want %v", tc.in, got, tc.want)
		assert.Equal(t, loc, got.Location(), tc.in)
	}
	for _, in := range []any{"", "30/06/2026", "2026-13-01", "2026-02-30", "tomorrow", "2026-06-30 10:00", 20260630, 1.5, true, nil, time.Date(2026, 6, 30, 0, 0, 0, 0, loc), []byte("2026-06-30")} {
		got, ok := automation.ParseDate(in, loc)
		assert.False(t, ok, "%#v", in)
		assert.True(t, got.IsZero(), "%#v", in)
	}
}

// dueSet has the date triggers of TestDateTriggerDue.
const dueSet = `automations:
  - name: birthday
    on: {date: {of: contact, field: custom.birthday, yearly: true, at: "10:00"}}
    do: [{tag: {add: [x]}}]
  - name: renewal
    on: {date: {of: contract, field: ends_on, offset: -30d}}
    do: [{tag: {add: [x]}}]
  - name: close-day
    on: {date: {of: deal, field: expected_close, at: "10:30"}}
    do: [{tag: {add: [x]}}]
  - name: eve
    on: {date: {of: contact, field: custom.anniversary, yearly: true, offset: -1d, at: "08:00"}}
    do: [{tag: {add: [x]}}]
  - name: day-after
    on: {date: {of: contact, field: custom.anniversary, yearly: true, offset: 1d}}
    do: [{tag: {add: [x]}}]
  - name: follow-up
    on: {date: {of: deal, field: expected_close, offset: 2d, at: "00:00"}}
    do: [{tag: {add: [x]}}]
`

func TestDateTriggerDue(t *testing.T) {
	t.Parallel()
	loc := berlin(t)
	s := mustLoad(t, dueSet)
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, loc) }
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, loc) }
	var none time.Time
	cases := []struct {
		name, auto       string
		date, done, now  time.Time
		wantOK           bool
		wantDate, wantAt time.Time
	}{
		// A yearly birthday: the next anniversary at 10:00.
		{"birthday later this year", "birthday", day(1990, 5, 10), none, at(2026, 3, 1, 12, 0), true, day(2026, 5, 10), at(2026, 5, 10, 10, 0)},
		{"birthday today, before 10:00", "birthday", day(1990, 5, 10), none, at(2026, 5, 10, 9, 59), true, day(2026, 5, 10), at(2026, 5, 10, 10, 0)},
		{"birthday today, at 10:00", "birthday", day(1990, 5, 10), none, at(2026, 5, 10, 10, 0), true, day(2027, 5, 10), at(2027, 5, 10, 10, 0)},
		{"birthday today, after 10:00", "birthday", day(1990, 5, 10), none, at(2026, 5, 10, 11, 0), true, day(2027, 5, 10), at(2027, 5, 10, 10, 0)},
		{"birthday passed this year", "birthday", day(1990, 5, 10), none, at(2026, 8, 1, 0, 0), true, day(2027, 5, 10), at(2027, 5, 10, 10, 0)},
		{"birthday run today already", "birthday", day(1990, 5, 10), day(2026, 5, 10), at(2026, 5, 10, 9, 0), true, day(2027, 5, 10), at(2027, 5, 10, 10, 0)},
		{"birthday run last year", "birthday", day(1990, 5, 10), day(2025, 5, 10), at(2026, 5, 10, 9, 0), true, day(2026, 5, 10), at(2026, 5, 10, 10, 0)},
		{"29 February in a common year", "birthday", day(2000, 2, 29), none, at(2026, 6, 1, 12, 0), true, day(2027, 2, 28), at(2027, 2, 28, 10, 0)},
		{"29 February in a leap year", "birthday", day(2000, 2, 29), none, at(2027, 3, 1, 12, 0), true, day(2028, 2, 29), at(2028, 2, 29, 10, 0)},
		{"now in UTC", "birthday", day(1990, 5, 10), none, time.Date(2026, 5, 10, 7, 30, 0, 0, time.UTC), true, day(2026, 5, 10), at(2026, 5, 10, 10, 0)},
		{"now in UTC, past 10:00 in Berlin", "birthday", day(1990, 5, 10), none, time.Date(2026, 5, 10, 8, 30, 0, 0, time.UTC), true, day(2027, 5, 10), at(2027, 5, 10, 10, 0)},
		// The first occurrence of a yearly date is the date itself.
		{"yearly date later this year", "birthday", day(2026, 8, 1), none, at(2026, 3, 1, 0, 0), true, day(2026, 8, 1), at(2026, 8, 1, 10, 0)},
		{"yearly date next year", "birthday", day(2027, 8, 1), none, at(2026, 3, 1, 0, 0), true, day(2027, 8, 1), at(2027, 8, 1, 10, 0)},
		{"yearly date years ahead", "birthday", day(2030, 8, 1), none, at(2026, 3, 1, 0, 0), true, day(2030, 8, 1), at(2030, 8, 1, 10, 0)},
		// Offsets across the turn of the year.
		{"eve of 1 January", "eve", day(1990, 1, 1), none, at(2026, 12, 31, 7, 0), true, day(2027, 1, 1), at(2026, 12, 31, 8, 0)},
		{"eve of 1 January passed", "eve", day(1990, 1, 1), none, at(2026, 12, 31, 9, 0), true, day(2028, 1, 1), at(2027, 12, 31, 8, 0)},
		{"day after 31 December", "day-after", day(1990, 12, 31), none, at(2027, 1, 1, 7, 0), true, day(2026, 12, 31), at(2027, 1, 1, 9, 0)},
		{"day after 31 December, run", "day-after", day(1990, 12, 31), day(2026, 12, 31), at(2027, 1, 1, 7, 0), true, day(2027, 12, 31), at(2028, 1, 1, 9, 0)},

		// A one-off date 30 days ahead at 09:00 (the default).
		{"contract ends in two months", "renewal", day(2026, 6, 30), none, at(2026, 5, 1, 12, 0), true, day(2026, 6, 30), at(2026, 5, 31, 9, 0)},
		{"reminder just before its time", "renewal", day(2026, 6, 30), none, at(2026, 5, 31, 8, 59), true, day(2026, 6, 30), at(2026, 5, 31, 9, 0)},
		{"reminder time passed, contract runs", "renewal", day(2026, 6, 30), none, at(2026, 6, 10, 15, 0), true, day(2026, 6, 30), at(2026, 6, 10, 15, 0)},
		{"contract ends today", "renewal", day(2026, 6, 30), none, at(2026, 6, 30, 23, 59), true, day(2026, 6, 30), at(2026, 6, 30, 23, 59)},
		{"contract ended yesterday", "renewal", day(2026, 6, 30), none, at(2026, 7, 1, 0, 0), false, none, none},
		{"contract ended long ago", "renewal", day(2026, 6, 30), none, at(2027, 1, 1, 0, 0), false, none, none},
		{"reminder sent", "renewal", day(2026, 6, 30), day(2026, 6, 30), at(2026, 5, 1, 12, 0), false, none, none},
		{"reminder sent for a later end", "renewal", day(2026, 6, 30), day(2027, 6, 30), at(2026, 5, 1, 12, 0), false, none, none},
		{"reminder sent for the previous end", "renewal", day(2026, 6, 30), day(2025, 6, 30), at(2026, 5, 1, 12, 0), true, day(2026, 6, 30), at(2026, 5, 31, 9, 0)},
		// A positive offset: due after the date, not late after it.
		{"follow-up ahead", "follow-up", day(2026, 6, 30), none, at(2026, 7, 1, 12, 0), true, day(2026, 6, 30), at(2026, 7, 2, 0, 0)},
		{"follow-up passed", "follow-up", day(2026, 6, 30), none, at(2026, 7, 2, 0, 1), false, none, none},

		// At 10:30 in Berlin: 08:30 UTC in summer, 09:30 in winter.
		{"10:30 in summer", "close-day", day(2026, 4, 15), none, at(2026, 4, 1, 0, 0), true, day(2026, 4, 15), time.Date(2026, 4, 15, 8, 30, 0, 0, time.UTC)},
		{"10:30 in winter", "close-day", day(2026, 12, 15), none, at(2026, 4, 1, 0, 0), true, day(2026, 12, 15), time.Date(2026, 12, 15, 9, 30, 0, 0, time.UTC)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := s.Get(tc.auto)
			require.NotNil(t, a)
			require.NotNil(t, a.On.Date)
			occ, ok := a.On.Date.Due(tc.date, tc.done, tc.now, loc)
			require.Equal(t, tc.wantOK, ok)
			if !ok {
				assert.Equal(t, automation.Occurrence{}, occ)
				return
			}
			assert.True(t, occ.Date.Equal(tc.wantDate), "date: got %v, want %v", occ.Date, tc.wantDate)
			assert.True(t, occ.At.Equal(tc.wantAt), "at: got %v, want %v", occ.At, tc.wantAt)
			assert.Equal(t, loc, occ.At.Location())
		})
	}
}

func TestDateTriggerDueFromParseDate(t *testing.T) {
	t.Parallel()
	loc := berlin(t)
	s := mustLoad(t, dueSet)
	// An RFC 3339 end late on 30 June UTC is 1 July in Berlin; the
	// reminder is 30 days before that day.
	date, ok := automation.ParseDate("2026-06-30T23:00:00Z", loc)
	require.True(t, ok)
	occ, ok := s.Get("renewal").On.Date.Due(date, time.Time{}, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), loc)
	require.True(t, ok)
	assert.Equal(t, "2026-07-01", occ.Date.Format(time.DateOnly))
	assert.Equal(t, "2026-06-01T09:00:00+02:00", occ.At.Format(time.RFC3339))
}

var builtinNames = []string{
	"birthday-greeting", "deal-escalation", "deal-next-step", "lead-callback",
	"order-thanks", "renewal-reminder", "win-back",
}

func TestBuiltins(t *testing.T) {
	t.Parallel()
	assert.Equal(t, builtinNames, automation.Builtins())
	for _, name := range automation.Builtins() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, err := automation.Builtin(name, nil)
			require.NoError(t, err)
			assert.True(t, s.Compiled())
			assert.Equal(t, "builtin/"+name+".yaml", s.File())
			require.NotEmpty(t, s.Automations)
			for _, a := range s.Automations {
				assert.Positive(t, a.Line(), a.Name)
				assert.NotEmpty(t, a.Do, a.Name)
				for _, x := range a.Do {
					assert.Positive(t, x.Line(), a.Name)
				}
			}

			src, err := automation.BuiltinSource(name)
			require.NoError(t, err)
			again, err := automation.Load("x.yaml", src, nil)
			require.NoError(t, err)
			assert.Equal(t, jsonOf(t, s.Automations), jsonOf(t, again.Automations))
		})
	}

	_, err := automation.Builtin("nope", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `automation: no ready-made set "nope"; have [birthday-greeting`)
	_, err = automation.BuiltinSource("../automation")
	require.Error(t, err)
}

func TestBuiltinBehaviour(t *testing.T) {
	t.Parallel()
	loc := berlin(t)

	bday, err := automation.Builtin("birthday-greeting", nil)
	require.NoError(t, err)
	a := bday.Get("birthday-greeting")
	require.NotNil(t, a)
	ok, err := a.Holds(automation.Env{Contact: map[string]any{"phone": "+49301234567"}})
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = a.Holds(automation.Env{Contact: map[string]any{"email": "a@example.com"}})
	require.NoError(t, err)
	assert.False(t, ok, "no phone, no SMS")
	occ, ok := a.On.Date.Due(time.Date(1990, 5, 10, 0, 0, 0, 0, loc), time.Time{}, time.Date(2026, 1, 1, 0, 0, 0, 0, loc), loc)
	require.True(t, ok)
	assert.Equal(t, "2026-05-10T10:00:00+02:00", occ.At.Format(time.RFC3339))

	steps, err := automation.Builtin("deal-next-step", nil)
	require.NoError(t, err)
	var matched []string
	for i := range steps.Automations {
		if steps.Automations[i].MatchesEvent(automation.EventInfo{Type: "deal.stage_changed", From: "contract", To: "won"}) {
			matched = append(matched, steps.Automations[i].Name)
		}
	}
	assert.Equal(t, []string{"next-step-won"}, matched)

	wb, err := automation.Builtin("win-back", nil)
	require.NoError(t, err)
	assert.True(t, wb.Automations[0].MatchesEvent(automation.EventInfo{Type: "segment.entered", Segment: "at_risk"}))
	assert.False(t, wb.Automations[0].MatchesEvent(automation.EventInfo{Type: "segment.entered", Segment: "champions"}))
}

// jsonOf is the set's exported content, without lines and compiled
// state, for comparing sets.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	loc := berlin(t)
	sets := map[string]*automation.Set{"valid": mustLoad(t, validSet), "due": mustLoad(t, dueSet)}
	for _, name := range automation.Builtins() {
		s, err := automation.Builtin(name, nil)
		require.NoError(t, err)
		sets[name] = s
	}
	for name, s := range sets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := s.Marshal()
			require.NoError(t, err)
			back, err := automation.Load("back.yaml", out, nil)
			require.NoError(t, err, "%s", out)
			assert.True(t, back.Compiled())
			assert.Equal(t, jsonOf(t, s.Automations), jsonOf(t, back.Automations))

			again, err := back.Marshal()
			require.NoError(t, err)
			assert.Equal(t, string(out), string(again))

			// The compiled parts behave the same.
			now := time.Date(2026, 3, 1, 12, 0, 0, 0, loc)
			for i := range s.Automations {
				a, b := &s.Automations[i], &back.Automations[i]
				assert.Equal(t, a.On, b.On, a.Name) // with the compiled schedule and time of day
				assert.Equal(t, a.On.Next(now, loc), b.On.Next(now, loc), a.Name)
				if a.On.Date != nil {
					date := time.Date(1990, 7, 1, 0, 0, 0, 0, loc)
					oa, okA := a.On.Date.Due(date, time.Time{}, now, loc)
					ob, okB := b.On.Date.Due(date, time.Time{}, now, loc)
					assert.Equal(t, okA, okB, a.Name)
					assert.True(t, oa.At.Equal(ob.At), "%s: %v != %v", a.Name, oa.At, ob.At)
				}
			}
		})
	}
}
