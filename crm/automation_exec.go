package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/loyalty"
	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/storage"
)

// subject is the record a run is about.
type subject struct {
	collection, id string
	body           map[string]any // nil for a schedule without a record
	raw            []byte
	envBody        map[string]any
}

// env is the record as conditions see it: its JSON with numbers as
// float64, as pipeline guards see records.
func (s *subject) env() map[string]any {
	if s == nil || s.raw == nil {
		return nil
	}
	if s.envBody == nil {
		if json.Unmarshal(s.raw, &s.envBody) != nil {
			s.envBody = map[string]any{}
		}
	}
	return s.envBody
}

func (s *subject) str(field string) string {
	if s == nil || s.body == nil {
		return ""
	}
	v, _ := s.body[field].(string)
	return v
}

// contactID is the subject's contact: itself for a contact, else its
// contact_id.
func (s *subject) contactID() string {
	if s == nil || s.id == "" {
		return ""
	}
	if s.collection == contactsCollection {
		return s.id
	}
	return s.str("contact_id")
}

// links are the subject and the records it names, for a new activity or
// send.
func (s *subject) links() Links {
	if s == nil {
		return Links{}
	}
	l := Links{ContactID: s.str("contact_id"), AccountID: s.str("account_id"), LeadID: s.str("lead_id"),
		DealID: s.str("deal_id"), CaseID: s.str("case_id")}
	switch s.collection {
	case contactsCollection:
		l.ContactID = s.id
	case accountsCollection:
		l.AccountID = s.id
	case leadsCollection:
		l.LeadID = s.id
	case dealsCollection:
		l.DealID = s.id
	case casesCollection:
		l.CaseID = s.id
	}
	return l
}

// kindOps are what runs do to records of one collection.
type kindOps struct {
	entity string
	// update validates and stores body (the record as JSON, changed) as
	// Update would.
	update func(ctx context.Context, tx storage.Tx, t *Tenant, body []byte) error
	// move moves the record, or is nil for kinds without pipelines.
	move func(ctx context.Context, tx storage.Tx, t *Tenant, id, stage string, opts MoveOptions) error
	// fill puts the record into the message data.
	fill func(d *MessageData, body []byte) error
}

func opsOf[T any, P entity[T]](k *kind[T], fill func(*MessageData, *T)) kindOps {
	o := kindOps{entity: k.name}
	o.update = func(ctx context.Context, tx storage.Tx, t *Tenant, body []byte) error {
		r := &Records[T]{t: t, k: k}
		v, err := r.decode(storage.Record{Body: body})
		if err != nil {
			return err
		}
		// decode sets Version from the record; keep the body's.
		var m struct {
			Version uint64 `json:"version"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			return err
		}
		k.meta(&v).Version = m.Version
		_, err = r.replace(ctx, tx, v)
		return err
	}
	if k.staging != nil {
		o.move = func(ctx context.Context, tx storage.Tx, t *Tenant, id, stage string, opts MoveOptions) error {
			s := staged(t, k)
			cur, p, err := s.checkMove(ctx, tx, id, stage, opts)
			if err != nil {
				return err
			}
			_, err = s.relocate(ctx, tx, cur, p, stage, opts)
			return err
		}
	}
	o.fill = func(d *MessageData, body []byte) error {
		v, err := (&Records[T]{k: k}).decode(storage.Record{Body: body})
		if err != nil {
			return err
		}
		fill(d, &v)
		return nil
	}
	return o
}

// subjectKinds are the collections runs can be about, with what runs do
// to them. A run about a record of another collection (an order, an
// activity) sees it in its condition but cannot update or move it.
var subjectKinds = map[string]kindOps{
	contactsCollection:  opsOf(contactKind, func(d *MessageData, v *Contact) { d.Contact = *v }),
	accountsCollection:  opsOf(accountKind, func(d *MessageData, v *Account) { d.Account = *v }),
	leadsCollection:     opsOf(leadKind, func(d *MessageData, v *Lead) { d.Lead = *v }),
	dealsCollection:     opsOf(dealKind, func(d *MessageData, v *Deal) { d.Deal = *v }),
	contractsCollection: opsOf(contractKind, func(d *MessageData, v *Contract) { d.Contract = *v }),
	casesCollection:     opsOf(caseKind, func(d *MessageData, v *Case) { d.Case = *v }),
	ordersCollection:    opsOf(orderKind, func(d *MessageData, v *Order) { d.Order = *v }),
}

// loadSubject reads the record a run is about; a deleted record is nil.
func loadSubject(ctx context.Context, tx storage.ReadTx, collection, id string) (*subject, error) {
	if id == "" {
		return &subject{collection: collection}, nil
	}
	rec, err := tx.Get(ctx, collection, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return subjectFrom(collection, id, rec.Body, rec.Version)
}

func subjectFrom(collection, id string, body []byte, version uint64) (*subject, error) {
	s := &subject{collection: collection, id: id, raw: body}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&s.body); err != nil {
		return nil, fmt.Errorf("%s %s: %w", collection, id, err)
	}
	if version > 0 {
		s.body["version"] = json.Number(strconv.FormatUint(version, 10))
	}
	return s, nil
}

// runExec is one run executing in a transaction.
type runExec struct {
	t   *Tenant
	tx  storage.Tx
	cs  *compiledSet
	ai  int
	a   *automation.Automation
	run *AutomationRun
	sub *subject
	now time.Time
	// data is the template data, built on first use.
	data *MessageData
	// external is set when the run stopped before an action that
	// happens outside the store.
	external bool
}

// isExternal reports whether an action happens outside the store.
func isExternal(x *automation.Action) bool { return x.Webhook != nil || x.Document != nil }

// local runs the run's store actions from run.Step up to the end or the
// first external action, recording what each did. It writes through
// x.tx, which the caller commits with the run or rolls back.
func (x *runExec) local(ctx context.Context) error {
	for x.run.Step < len(x.a.Do) {
		act := &x.a.Do[x.run.Step]
		if isExternal(act) {
			x.external = true
			return nil
		}
		what, err := x.action(ctx, x.run.Step, act)
		if err != nil {
			return &actionError{step: x.run.Step, kind: act.Kind(), err: err}
		}
		x.run.Done = append(x.run.Done, what)
		x.run.Step++
	}
	return nil
}

// actionError is an action that failed.
type actionError struct {
	step int
	kind string
	err  error
}

func (e *actionError) Error() string {
	if e.step < 0 {
		return fmt.Sprintf("%s: %v", e.kind, e.err)
	}
	return fmt.Sprintf("action %d (%s): %v", e.step+1, e.kind, e.err)
}
func (e *actionError) Unwrap() error { return e.err }

// permanent reports whether retrying cannot help: the record is gone, the
// automation is misconfigured, or the domain refused the change for a
// reason that does not pass by itself.
func permanent(err error) bool {
	var ve *ValidationError
	return errors.As(err, &ve) || errors.Is(err, ErrNotFound) || errors.Is(err, pipeline.ErrTransitionNotAllowed) ||
		errors.Is(err, pipeline.ErrUnknownStage) || errors.Is(err, errRefused) || errors.Is(err, plugins.ErrRejected) ||
		errors.Is(err, plugins.ErrUnknown) || errors.Is(err, loyalty.ErrInvalid) || errors.Is(err, loyalty.ErrInsufficientPoints) ||
		errors.Is(err, loyalty.ErrIdempotencyConflict) || errors.Is(err, ErrInvalid) || errors.As(err, new(*storage.UniqueError))
}

// errRefused is an action that cannot run on its record as it is
// (no owner, no contact, the wrong kind of record): retrying cannot help.
var errRefused = errors.New("automation action refused")

func (x *runExec) needRecord(kind string) error {
	if x.sub == nil || x.sub.id == "" {
		return fmt.Errorf("%w: %s needs a record to act on (this trigger has none)", errRefused, kind)
	}
	return nil
}

func (x *runExec) action(ctx context.Context, step int, act *automation.Action) (string, error) {
	tm := x.cs.tmpl[x.ai][step]
	switch {
	case act.Activity != nil:
		return x.activity(ctx, act.Activity, tm)
	case act.Update != nil:
		if err := x.needRecord("update"); err != nil {
			return "", err
		}
		for k, v := range act.Update.Set {
			if custom, ok := strings.CutPrefix(k, "custom."); ok {
				m, _ := x.sub.body["custom"].(map[string]any)
				if m == nil {
					m = map[string]any{}
				}
				m[custom] = v
				x.sub.body["custom"] = m
				continue
			}
			x.sub.body[k] = v
		}
		if err := x.write(ctx); err != nil {
			return "", err
		}
		return "updated " + strings.Join(sortedAnyKeys(act.Update.Set), ", "), nil
	case act.Move != nil:
		if err := x.needRecord("move"); err != nil {
			return "", err
		}
		ops, ok := subjectKinds[x.sub.collection]
		if !ok || ops.move == nil {
			return "", fmt.Errorf("%w: %s records do not move through pipelines", errRefused, x.sub.collection)
		}
		err := ops.move(ctx, x.tx, x.t, x.sub.id, act.Move.Stage, MoveOptions{Reason: act.Move.Reason,
			Actor: pipeline.Actor{ID: "automation:" + x.a.Name, Roles: []string{"automation"}}})
		if err != nil {
			return "", err
		}
		if err := x.reload(ctx); err != nil {
			return "", err
		}
		return "moved to " + act.Move.Stage, nil
	case act.Assign != nil:
		if err := x.needRecord("assign"); err != nil {
			return "", err
		}
		who, err := x.resolve(ctx, act.Assign.To)
		if err != nil {
			return "", err
		}
		x.sub.body["owner"] = who
		if err := x.write(ctx); err != nil {
			return "", err
		}
		return "assigned to " + who, nil
	case act.Tag != nil:
		if err := x.needRecord("tag"); err != nil {
			return "", err
		}
		var tags []string
		if list, ok := x.sub.body["tags"].([]any); ok {
			for _, v := range list {
				if s, ok := v.(string); ok && !slices.Contains(act.Tag.Remove, s) {
					tags = append(tags, s)
				}
			}
		}
		tags = append(tags, act.Tag.Add...)
		x.sub.body["tags"] = tags
		if err := x.write(ctx); err != nil {
			return "", err
		}
		var parts []string
		if len(act.Tag.Add) > 0 {
			parts = append(parts, "added tags "+strings.Join(act.Tag.Add, ", "))
		}
		if len(act.Tag.Remove) > 0 {
			parts = append(parts, "removed tags "+strings.Join(act.Tag.Remove, ", "))
		}
		return strings.Join(parts, "; "), nil
	case act.Points != nil:
		return x.points(ctx, step, act.Points)
	case act.Message != nil:
		return x.message(ctx, step, act.Message, tm)
	case act.Emit != nil:
		typ := "custom." + act.Emit.Event
		body := []byte(`{}`)
		coll, id := automationRunsCollection, x.run.ID
		if x.sub != nil && x.sub.id != "" {
			body = append(append([]byte(`{"data":`), x.sub.raw...), '}')
			coll, id = x.sub.collection, x.sub.id
		}
		if err := x.tx.Append(ctx, storage.Event{Type: typ, Collection: coll, RecordID: id, Time: x.now, Body: body}); err != nil {
			return "", err
		}
		return "emitted " + typ, nil
	}
	return "", fmt.Errorf("%w: unknown action", ErrInvalid)
}

func sortedAnyKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// write stores the subject's changed body through its kind's update.
func (x *runExec) write(ctx context.Context) error {
	ops, ok := subjectKinds[x.sub.collection]
	if !ok {
		return fmt.Errorf("%w: %s records cannot be changed by automations", errRefused, x.sub.collection)
	}
	body, err := json.Marshal(x.sub.body)
	if err != nil {
		return err
	}
	if err := ops.update(ctx, x.tx, x.t, body); err != nil {
		return err
	}
	return x.reload(ctx)
}

// reload reads the subject again after a change.
func (x *runExec) reload(ctx context.Context) error {
	s, err := loadSubject(ctx, x.tx, x.sub.collection, x.sub.id)
	if err != nil {
		return err
	}
	if s == nil {
		return fmt.Errorf("%w: %s %s", ErrNotFound, x.sub.collection, x.sub.id)
	}
	x.sub, x.data = s, nil
	return nil
}

func (x *runExec) activity(ctx context.Context, a *automation.ActivityAction, tm *actionTemplates) (string, error) {
	who, err := x.resolve(ctx, a.For)
	if err != nil {
		return "", err
	}
	d, err := x.messageData(ctx)
	if err != nil {
		return "", err
	}
	subj, err := render(tm.subject, tm.custom, d)
	if err != nil {
		return "", err
	}
	notes, err := render(tm.notes, tm.custom, d)
	if err != nil {
		return "", err
	}
	typ := ActivityType(a.Type)
	if typ == "" {
		typ = Task
	}
	act := Activity{Meta: Meta{Owner: who}, Type: typ, Subject: subj, Notes: notes, Assignee: who}
	if a.Due > 0 {
		act.DueAt = x.now.Add(time.Duration(a.Due))
	}
	if x.sub != nil && x.sub.id != "" {
		act.Links = x.sub.links()
	}
	act.ID = runChildID(x.run.ID, x.run.Step)
	created, err := (&Records[Activity]{t: x.t, k: activityKind}).create(ctx, x.tx, act, x.now)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %q for %s (activity %s)", typ, subj, who, created.ID), nil
}

// runChildID is the ID of what step of a run creates: fixed, so that a
// run that is tried again cannot create it twice.
func runChildID(run string, step int) string {
	return noticeID(run, strconv.Itoa(step))
}

// resolve finds the user an activity or assignment is for.
func (x *runExec) resolve(ctx context.Context, who string) (string, error) {
	kind, arg, _ := strings.Cut(who, ":")
	switch {
	case who == "" || who == "owner":
		if o, err := x.owner(ctx); err != nil || o != "" {
			return o, err
		}
		return "", fmt.Errorf("%w: the record has no owner, nor has its contact", errRefused)
	case who == "manager":
		owner, err := x.owner(ctx)
		if err != nil {
			return "", err
		}
		if owner == "" {
			return "", fmt.Errorf("%w: the record has no owner, so no manager", errRefused)
		}
		u, err := (&Records[User]{t: x.t, k: userKind}).get(ctx, x.tx, owner)
		if err != nil {
			return "", fmt.Errorf("owner %s: %w", owner, err)
		}
		if u.TeamID == "" {
			return "", fmt.Errorf("%w: the owner %s is in no team", errRefused, owner)
		}
		team, err := (&Records[Team]{t: x.t, k: teamKind}).get(ctx, x.tx, u.TeamID)
		if err != nil {
			return "", fmt.Errorf("team %s: %w", u.TeamID, err)
		}
		if team.ManagerID == "" || team.ManagerID == owner {
			// The team lead's own deal goes to the parent team's lead.
			if team.ParentID != "" {
				if parent, err := (&Records[Team]{t: x.t, k: teamKind}).get(ctx, x.tx, team.ParentID); err == nil && parent.ManagerID != "" {
					return parent.ManagerID, nil
				}
			}
			if team.ManagerID == "" {
				return "", fmt.Errorf("%w: team %s has no manager", errRefused, team.ID)
			}
		}
		return team.ManagerID, nil
	case kind == "user":
		return arg, nil
	case kind == "role":
		users, err := activeUsers(ctx, x.tx, storage.Query{}, func(u *User) bool { return slices.Contains(u.Roles, arg) })
		if err != nil {
			return "", err
		}
		if len(users) == 0 {
			return "", fmt.Errorf("%w: no active user has the role %q", errRefused, arg)
		}
		return users[0], nil
	case kind == "team":
		return x.roundRobin(ctx, arg)
	}
	return "", fmt.Errorf("%w: who %q", ErrInvalid, who)
}

// owner is the record's owner or, for a record without one (an order, a
// survey response), its contact's.
func (x *runExec) owner(ctx context.Context) (string, error) {
	if o := x.sub.str("owner"); o != "" {
		return o, nil
	}
	cid := x.sub.contactID()
	if cid == "" || x.sub.collection == contactsCollection {
		return "", nil
	}
	c, err := loadSubject(ctx, x.tx, contactsCollection, cid)
	if err != nil || c == nil {
		return "", err
	}
	return c.str("owner"), nil
}

// activeUsers lists, in ID order, the IDs of the active users q selects
// for which keep (nil: all) holds.
func activeUsers(ctx context.Context, tx storage.ReadTx, q storage.Query, keep func(*User) bool) ([]string, error) {
	var out []string
	err := scanAll(ctx, tx, usersCollection, q, func(rec storage.Record) error {
		var u User
		if err := json.Unmarshal(rec.Body, &u); err != nil {
			return err
		}
		if !u.Inactive && (keep == nil || keep(&u)) {
			out = append(out, rec.ID)
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// roundRobin gives the team's active members work in turn; the turn is
// stored with the run, so it survives restarts.
func (x *runExec) roundRobin(ctx context.Context, team string) (string, error) {
	members, err := activeUsers(ctx, x.tx, storage.Query{Index: "team", Equal: team}, nil)
	if err != nil {
		return "", err
	}
	if len(members) == 0 {
		return "", fmt.Errorf("%w: team %s has no active members", errRefused, team)
	}
	id := "round-robin/" + team
	var turn struct {
		Next int `json:"next"`
	}
	var version uint64
	rec, err := x.tx.Get(ctx, automationStateCollection, id)
	switch {
	case err == nil:
		if err := json.Unmarshal(rec.Body, &turn); err != nil {
			return "", err
		}
		version = rec.Version
	case !errors.Is(err, storage.ErrNotFound):
		return "", err
	}
	who := members[turn.Next%len(members)]
	turn.Next = (turn.Next + 1) % len(members)
	body, _ := json.Marshal(turn)
	if _, err := x.tx.Put(ctx, automationStateCollection, storage.Record{ID: id, Version: version, Body: body}); err != nil {
		return "", err
	}
	return who, nil
}

func (x *runExec) points(ctx context.Context, step int, p *automation.PointsAction) (string, error) {
	if err := x.needRecord("points"); err != nil {
		return "", err
	}
	member := x.sub.contactID()
	if member == "" {
		return "", fmt.Errorf("%w: the record has no contact to give points to", errRefused)
	}
	reason := p.Reason
	if reason == "" {
		reason = "automation " + x.a.Name
	}
	op := loyalty.Op{Key: "automation/" + runChildID(x.run.ID, step), Kind: loyalty.KindEarn, Points: p.Points, At: x.now, Reason: reason}
	if p.Points < 0 {
		op.Kind = loyalty.KindAdjust
	}
	lt := x.t.Ledger(p.Program, false).begin(x.tx)
	if _, err := lt.apply(ctx, member, op); err != nil {
		return "", err
	}
	if err := lt.commit(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("%+d points in %s to %s", p.Points, p.Program, member), nil
}

func (x *runExec) message(ctx context.Context, step int, m *automation.MessageAction, tm *actionTemplates) (string, error) {
	if x.t.e.opts.Plugins == nil {
		return "", fmt.Errorf("%w: messages need Options.Plugins", errRefused)
	}
	d, err := x.messageData(ctx)
	if err != nil {
		return "", err
	}
	subj, err := render(tm.subject, tm.custom, d)
	if err != nil {
		return "", err
	}
	body, err := render(tm.body, tm.custom, d)
	if err != nil {
		return "", err
	}
	to := d.Customer.Email
	if k, ok := x.t.e.kinds.Load(m.Via); ok && k.(string) != "email" || !ok && !strings.Contains(m.Via, "mail") {
		to = d.Customer.Phone
	}
	if to == "" {
		return "", fmt.Errorf("%w: the customer has no address for %s", errRefused, m.Via)
	}
	s := Send{Meta: Meta{ID: runChildID(x.run.ID, step), Owner: x.sub.str("owner")}, Channel: m.Via, Recipient: to, Subject: subj, Body: body}
	if x.sub != nil && x.sub.id != "" {
		s.Links = x.sub.links()
	}
	if _, err := (&Records[Send]{t: x.t, k: sendKind}).create(ctx, x.tx, s, x.now); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return "message to " + to + " (sent before)", nil
		}
		return "", err
	}
	return fmt.Sprintf("message via %s to %s (send %s)", m.Via, to, s.ID), nil
}

// messageData builds the template data from the subject and the records
// it links to.
func (x *runExec) messageData(ctx context.Context) (*MessageData, error) {
	if x.data != nil {
		return x.data, nil
	}
	d := &MessageData{Seller: x.t.e.opts.Seller, Event: x.run.Event, Vars: x.a.Vars, Now: x.now.In(x.t.Location())}
	if d.Vars == nil {
		d.Vars = map[string]string{}
	}
	s := x.sub
	if s != nil && s.id != "" {
		if ops, ok := subjectKinds[s.collection]; ok {
			if err := ops.fill(d, s.raw); err != nil {
				return nil, err
			}
		}
		load := func(coll, id string) error {
			if id == "" || coll == s.collection {
				return nil
			}
			rec, err := x.tx.Get(ctx, coll, id)
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			return subjectKinds[coll].fill(d, rec.Body)
		}
		l := s.links()
		for _, p := range [][2]string{{contactsCollection, l.ContactID}, {accountsCollection, l.AccountID}, {dealsCollection, l.DealID}, {leadsCollection, l.LeadID}} {
			if err := load(p[0], p[1]); err != nil {
				return nil, err
			}
		}
		if d.Account.ID == "" && d.Contact.AccountID != "" {
			if err := load(accountsCollection, d.Contact.AccountID); err != nil {
				return nil, err
			}
		}
		if owner := s.str("owner"); owner != "" {
			if u, err := (&Records[User]{t: x.t, k: userKind}).get(ctx, x.tx, owner); err == nil {
				d.Owner = u
			}
		}
	}
	switch {
	case d.Contact.ID != "":
		d.Customer = plugins.Party{Name: d.Contact.Name(), Email: d.Contact.Email, Phone: d.Contact.Phone, Address: d.Account.City}
	case d.Lead.ID != "":
		name := strings.TrimSpace(d.Lead.FirstName + " " + d.Lead.LastName)
		if name == "" {
			name = d.Lead.Company
		}
		d.Customer = plugins.Party{Name: name, Email: d.Lead.Email, Phone: d.Lead.Phone}
	case d.Account.ID != "":
		d.Customer = plugins.Party{Name: d.Account.Name, Address: d.Account.City}
	}
	if prog := d.Vars["program"]; prog != "" && d.Contact.ID != "" {
		d.Loyalty.Program = prog
		p, err := readProfile(ctx, x.tx, prog, d.Contact.ID)
		if err == nil {
			d.Loyalty.Tier = p.Tier
		}
		st, err := x.t.Ledger(prog, false).stateIn(ctx, x.tx, d.Contact.ID)
		if err == nil {
			d.Loyalty.Points = st.Balance
		}
	}
	x.data = d
	return d, nil
}

// docFormat turns a document action's format into the plugins one (empty
// is PDF).
func docFormat(f string) plugins.Format {
	if f == "html" {
		return plugins.HTML
	}
	return plugins.PDF
}
