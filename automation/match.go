package automation

import (
	"fmt"
	"strings"
	"time"
)

// EventInfo is what a condition knows about the event that triggered it
// (event.type, ...). For schedules, dates and inactivity Type is
// "schedule", "date" or "inactivity".
type EventInfo struct {
	Type string `expr:"type" json:"type"`
	// From and To are the stages of a stage change.
	From string `expr:"from" json:"from,omitempty"`
	To   string `expr:"to" json:"to,omitempty"`
	// Segment is the segment of segment.entered and segment.left.
	Segment string `expr:"segment" json:"segment,omitempty"`
	// Changed lists the fields an update changed.
	Changed []string `expr:"changed" json:"changed,omitempty"`
	// Depth counts the automation runs that led to this event: 0 for a
	// change made by a person or program, 1 for one made by an
	// automation, and so on.
	Depth int `expr:"depth" json:"depth"`
	// Time is when the event happened, or when the schedule or date was
	// due.
	Time time.Time `expr:"time" json:"time"`
}

// Env is what a condition sees.
type Env struct {
	// Record is the record the trigger is about, as its JSON (nil for a
	// schedule without For).
	Record map[string]any
	// Contact is the record's contact (the record itself for a contact).
	Contact map[string]any
	Event   EventInfo
	Vars    map[string]string
}

func conditionEnv() map[string]any {
	return map[string]any{
		"record":  map[string]any{},
		"contact": map[string]any{},
		"event":   EventInfo{},
		"vars":    map[string]string{},
	}
}

// Holds evaluates the automation's condition (true when it has none).
func (a *Automation) Holds(env Env) (bool, error) {
	if a.When == "" {
		return true, nil
	}
	if a.cond == nil {
		return false, fmt.Errorf("automation %s: the set is not compiled", a.Name)
	}
	vars := env.Vars
	if vars == nil {
		vars = a.Vars
	}
	rec, contact := env.Record, env.Contact
	if rec == nil {
		rec = map[string]any{}
	}
	if contact == nil {
		contact = map[string]any{}
	}
	return a.cond.Bool(map[string]any{"record": rec, "contact": contact, "event": env.Event, "vars": vars})
}

// MatchesEvent reports whether an event trigger takes up the event; it is
// false for the other triggers.
func (a *Automation) MatchesEvent(ev EventInfo) bool {
	t := &a.On
	if a.Disabled || t.Event == "" {
		return false
	}
	if t.Event != ev.Type {
		prefix, ok := strings.CutSuffix(t.Event, "*")
		if !ok || !strings.HasPrefix(ev.Type, prefix) {
			return false
		}
	}
	return (t.From == "" || t.From == ev.From) && (t.To == "" || t.To == ev.To) &&
		(t.Segment == "" || t.Segment == ev.Segment)
}

// Next returns the first time after after that a schedule trigger is
// due, in loc; zero for other triggers.
func (t *Trigger) Next(after time.Time, loc *time.Location) time.Time {
	if t.sched == nil {
		return time.Time{}
	}
	return t.sched.Next(after.In(loc))
}

// ParseDate reads a date field's value: "YYYY-MM-DD" (a day in loc) or an
// RFC 3339 time (its day in loc).
func ParseDate(v any, loc *time.Location) (time.Time, bool) {
	s, ok := v.(string)
	if !ok || s == "" {
		return time.Time{}, false
	}
	if d, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return d, true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		t = t.In(loc)
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc), true
	}
	return time.Time{}, false
}

// Occurrence is one time a date trigger falls due for a record.
type Occurrence struct {
	// Date is the day of the record's date this occurrence is for (this
	// year's birthday, the contract's end).
	Date time.Time
	// At is when it is due: Date moved by Offset, at At o'clock.
	At time.Time
}

// Due returns the occurrence of the date trigger for the date value that
// is due next at now, skipping occurrences for dates up to done (the last
// date it ran for; zero for none). A yearly trigger gives the first
// anniversary due after now (29 February falls on 28 February in other
// years). A one-off date gives its occurrence if due after now, or, if
// its time has passed but the date itself is today or ahead (a contract
// entered 10 days before its end, for a reminder 30 days before), now:
// it runs late rather than never. ok is false when nothing is due.
func (d *DateTrigger) Due(date, done, now time.Time, loc *time.Location) (Occurrence, bool) {
	at := func(day time.Time) time.Time {
		t := day.AddDate(0, 0, int(time.Duration(d.Offset)/(24*time.Hour)))
		return time.Date(t.Year(), t.Month(), t.Day(), d.hour, d.minute, 0, 0, loc)
	}
	now = now.In(loc)
	if !d.Yearly {
		if !done.IsZero() && !date.After(done) {
			return Occurrence{}, false
		}
		o := Occurrence{Date: date, At: at(date)}
		if o.At.After(now) {
			return o, true
		}
		if !date.AddDate(0, 0, 1).After(now) {
			return Occurrence{}, false
		}
		o.At = now
		return o, true
	}
	// Anniversaries before the date's own year are before the date; a
	// date years ahead is first due in its own year.
	first := max(now.Year()-1, date.Year())
	for year := first; year <= first+3; year++ {
		day := anniversary(date, year, loc)
		if day.Before(date) || (!done.IsZero() && !day.After(done)) {
			continue
		}
		if o := (Occurrence{Date: day, At: at(day)}); o.At.After(now) {
			return o, true
		}
	}
	return Occurrence{}, false
}

// anniversary returns date's month and day in year (28 February for 29
// February in a year without it).
func anniversary(date time.Time, year int, loc *time.Location) time.Time {
	m, day := date.Month(), date.Day()
	if m == time.February && day == 29 && time.Date(year, 2, 29, 0, 0, 0, 0, loc).Month() != time.February {
		day = 28
	}
	return time.Date(year, m, day, 0, 0, 0, 0, loc)
}
