package crm

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/plugins"
)

// MessageData is what the templates of automations see: the record the
// run is about and the records around it, the customer and seller as on
// documents (plugins.Party), the automation's vars and, when the vars name
// a loyalty program ("program"), the contact's standing in it. Records a
// run has no link to are zero. Templates are Go text/template:
// {{.Contact.FirstName}}, {{.Vars.discount}}, {{.Deal.Amount.Amount}},
// with the functions upper, lower and last (see templateFuncs).
type MessageData struct {
	Contact  Contact
	Account  Account
	Lead     Lead
	Deal     Deal
	Order    Order
	Contract Contract
	Case     Case
	// Owner is the user who owns the record.
	Owner User
	// Customer is the contact (or lead) as a party: name, email, phone,
	// and the account's city as address.
	Customer plugins.Party
	// Seller is Options.Seller.
	Seller  plugins.Party
	Loyalty LoyaltyStanding
	Event   automation.EventInfo
	Vars    map[string]string
	// Now is the run's time in the tenant's time zone.
	Now time.Time
}

// LoyaltyStanding is a contact's points and tier in the program an
// automation's vars name.
type LoyaltyStanding struct {
	Program string
	Points  int64
	Tier    string
}

// templateFuncs are the functions templates have besides text/template's
// own: upper, lower, and last N s (the last N characters of s, all of
// it when shorter), for codes such as BDAY-{{last 6 .Contact.ID | upper}}.
var templateFuncs = template.FuncMap{
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"last": func(n int, s string) string {
		r := []rune(s)
		if n < 0 || n >= len(r) {
			return s
		}
		return string(r[len(r)-n:])
	},
}

// actionTemplates are the parsed templates of one action.
type actionTemplates struct {
	subject, body, notes *template.Template
	// custom lists the custom fields the templates read, as
	// {record field, key} (Contact, birthday): a run fills the absent
	// ones with "", so that a template reading an unset custom field
	// gives an empty string rather than an error.
	custom [][2]string
}

// compiledSet is a tenant's set with its templates.
type compiledSet struct {
	set     *automation.Set
	version uint64
	// fromSeq: events up to it came before the set (setRec.FromSeq).
	fromSeq uint64
	// raw is the stored record's body, which identifies this version.
	raw []byte
	// defs identify each automation's definition (a hash), so that a
	// run begun under one is not continued under another.
	defs []string
	// tmpl holds the templates of action j of automation i at [i][j].
	tmpl [][]*actionTemplates
}

// CheckAutomations checks the templates of a compiled set against
// MessageData: a field or var that does not exist is an error now, not an
// empty string at send time. Engine.Automations().Save calls it; crmctl
// automations check does too. Errors are an *automation.DefinitionError.
func CheckAutomations(set *automation.Set) error {
	_, err := compileTemplates(set)
	return err
}

func compileTemplates(set *automation.Set) ([][]*actionTemplates, error) {
	if !set.Compiled() {
		return nil, fmt.Errorf("crm: %w: compile the set first", automation.ErrInvalid)
	}
	var problems []automation.Problem
	out := make([][]*actionTemplates, len(set.Automations))
	for i := range set.Automations {
		a := &set.Automations[i]
		out[i] = make([]*actionTemplates, len(a.Do))
		for j := range a.Do {
			x := &a.Do[j]
			at := &actionTemplates{}
			var srcs []struct {
				name, src string
				dst       **template.Template
			}
			add := func(name, src string, dst **template.Template) {
				if src != "" {
					srcs = append(srcs, struct {
						name, src string
						dst       **template.Template
					}{name, src, dst})
				}
			}
			if x.Update != nil {
				for _, msg := range checkUpdateFields(a, x.Update) {
					problems = append(problems, automation.Problem{File: set.File(), Line: x.Line(), Automation: a.Name, Message: "update: " + msg})
				}
			}
			switch {
			case x.Activity != nil:
				add("subject", x.Activity.Subject, &at.subject)
				add("notes", x.Activity.Notes, &at.notes)
			case x.Message != nil:
				add("subject", x.Message.Subject, &at.subject)
				add("body", x.Message.Body, &at.body)
			case x.Webhook != nil:
				add("body", x.Webhook.Body, &at.body)
			}
			for _, s := range srcs {
				tm, custom, err := parseTemplate(a, s.name, s.src)
				if err != nil {
					problems = append(problems, automation.Problem{File: set.File(), Line: x.Line(), Automation: a.Name,
						Message: fmt.Sprintf("%s: %s: %v", x.Kind(), s.name, err)})
					continue
				}
				*s.dst = tm
				at.custom = append(at.custom, custom...)
			}
			out[i][j] = at
		}
	}
	if len(problems) > 0 {
		return nil, &automation.DefinitionError{Problems: problems}
	}
	return out, nil
}

// parseTemplate parses src and executes it on sample data with the
// automation's vars, so that unknown fields and vars fail here.
func parseTemplate(a *automation.Automation, name, src string) (*template.Template, [][2]string, error) {
	tm, err := template.New(a.Name + "/" + name).Option("missingkey=error").Funcs(templateFuncs).Parse(src)
	if err != nil {
		return nil, nil, cleanTemplateError(err)
	}
	custom := customFields(tm.Tree.Root)
	data := sampleMessageData(a.Vars)
	fillCustom(&data, custom)
	var b strings.Builder
	if err := tm.Execute(&b, data); err != nil {
		return nil, nil, cleanTemplateError(err)
	}
	return tm, custom, nil
}

// cleanTemplateError drops the template name text/template puts first.
func cleanTemplateError(err error) error {
	var ee template.ExecError
	if errors.As(err, &ee) {
		err = ee.Err
	}
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, ": executing "); ok {
		if _, after, ok := strings.Cut(rest, ": "); ok {
			msg = after
		}
	}
	msg = strings.TrimPrefix(msg, "template: ")
	return errors.New(msg)
}

// customFields finds the custom fields a template reads:
// .Contact.Custom.key and the like.
func customFields(n parse.Node) [][2]string {
	var out [][2]string
	var walk func(parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case nil:
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, c := range n.Args {
				walk(c)
			}
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.FieldNode:
			for i := 0; i+2 < len(n.Ident); i++ {
				if n.Ident[i+1] == "Custom" {
					out = append(out, [2]string{n.Ident[i], n.Ident[i+2]})
				}
			}
		}
	}
	walk(n)
	return out
}

// fillCustom gives the custom fields a template reads a value, "" when
// the record has none.
func fillCustom(d *MessageData, custom [][2]string) {
	for _, c := range custom {
		var m *map[string]any
		switch c[0] {
		case "Contact":
			m = &d.Contact.Custom
		case "Account":
			m = &d.Account.Custom
		case "Lead":
			m = &d.Lead.Custom
		case "Deal":
			m = &d.Deal.Custom
		case "Order":
			m = &d.Order.Custom
		case "Contract":
			m = &d.Contract.Custom
		case "Case":
			m = &d.Case.Custom
		case "Owner":
			m = &d.Owner.Custom
		default:
			continue
		}
		if *m == nil {
			*m = map[string]any{}
		}
		if _, ok := (*m)[c[1]]; !ok {
			(*m)[c[1]] = ""
		}
	}
}

// sampleMessageData is what templates are tried on when loaded: every
// record present, with IDs and names, so that a template that works here
// fails at send time only on data (an index out of range).
func sampleMessageData(vars map[string]string) MessageData {
	const id = "0193a0e2-7c1d-7000-8000-000000000000"
	now := time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)
	m := Meta{ID: id, Owner: id, CreatedAt: now, UpdatedAt: now}
	v := map[string]string{}
	for k, x := range vars {
		v[k] = x
	}
	return MessageData{
		Contact:  Contact{Meta: m, FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com", Phone: "+441234567890"},
		Account:  Account{Meta: m, Name: "Analytical Engines Ltd"},
		Lead:     Lead{Meta: m, FirstName: "Ada", LastName: "Lovelace", Company: "Analytical Engines Ltd"},
		Deal:     Deal{Meta: m, Title: "Difference engine", Stage: "proposal", Pipeline: "b2b-deal"},
		Order:    Order{Meta: m, Number: "A-1", OrderedAt: now, Currency: "EUR"},
		Contract: Contract{Meta: m, Title: "Support 2026", StartsOn: "2026-01-01", EndsOn: "2026-12-31"},
		Case:     Case{Meta: m},
		Owner:    User{Meta: m, Name: "Grace Hopper", Email: "grace@example.com"},
		Customer: plugins.Party{Name: "Ada Lovelace", Email: "ada@example.com", Phone: "+441234567890"},
		Seller:   plugins.Party{Name: "Rapport Ltd"},
		Loyalty:  LoyaltyStanding{Program: "loyalty", Points: 100, Tier: "gold"},
		Event:    automation.EventInfo{Type: "deal.stage_changed", From: "a", To: "b", Time: now},
		Vars:     v,
		Now:      now,
	}
}

// render executes a template of an action on d.
func render(tm *template.Template, custom [][2]string, d *MessageData) (string, error) {
	if tm == nil {
		return "", nil
	}
	fillCustom(d, custom)
	var b strings.Builder
	if err := tm.Execute(&b, d); err != nil {
		return "", fmt.Errorf("template %s: %w", tm.Name(), cleanTemplateError(err))
	}
	return b.String(), nil
}

// updatable are the record types update actions can change, by entity.
var updatable = map[string]reflect.Type{
	"contact": reflect.TypeFor[Contact](), "account": reflect.TypeFor[Account](), "lead": reflect.TypeFor[Lead](),
	"deal": reflect.TypeFor[Deal](), "contract": reflect.TypeFor[Contract](), "case": reflect.TypeFor[Case](),
	"order": reflect.TypeFor[Order](),
}

// subjectEntity is the entity an automation's runs are about, when its
// trigger says ("" for any event type and schedules without for).
func subjectEntity(a *automation.Automation) string {
	switch {
	case a.On.Date != nil:
		return a.On.Date.Of
	case a.On.Schedule != "":
		return a.On.For
	case a.On.Inactivity != nil:
		return "contact"
	case strings.HasPrefix(a.On.Event, "segment."):
		return "contact"
	}
	entity, _, _ := strings.Cut(a.On.Event, ".")
	return entity
}

// checkUpdateFields checks that the fields an update sets exist on the
// record it updates (when the trigger says which), and turns YAML dates
// into the strings records store.
func checkUpdateFields(a *automation.Automation, u *automation.UpdateAction) []string {
	var out []string
	for k, v := range u.Set {
		if tv, ok := v.(time.Time); ok {
			if tv.Equal(time.Date(tv.Year(), tv.Month(), tv.Day(), 0, 0, 0, 0, time.UTC)) {
				u.Set[k] = tv.Format(time.DateOnly)
			} else {
				u.Set[k] = tv.Format(time.RFC3339)
			}
		}
	}
	typ, ok := updatable[subjectEntity(a)]
	if !ok {
		return nil
	}
	fields := jsonFields(typ)
	for _, k := range sortedAnyKeys(u.Set) {
		if strings.HasPrefix(k, "custom.") {
			continue
		}
		if !fields[k] {
			out = append(out, fmt.Sprintf("a %s has no field %q", subjectEntity(a), k))
		}
	}
	return out
}

// jsonFields lists the JSON names of a struct's fields, embedded ones
// included.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for k := range jsonFields(f.Type) {
				out[k] = true
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}
