package crm

import (
	"context"
	"fmt"
	"slices"

	"github.com/rapportcrm/rapport/storage"
)

// User is a person who works in the CRM: owns records, is assigned
// activities, has sales targets. Meta.Owner of other records holds a
// user's ID.
//
// Indexes for ListOptions.By: "email" (unique per tenant), "team",
// "territory", "role".
//
// Events: user.created, user.updated, user.deleted.
type User struct {
	Meta
	// Name is required.
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	// Roles are free names that pipeline guards and automations can test
	// (actor.roles).
	Roles       []string `json:"roles,omitempty"`
	TeamID      string   `json:"team_id,omitempty"`
	TerritoryID string   `json:"territory_id,omitempty"`
	// Inactive users keep their history but should get no new work.
	Inactive bool `json:"inactive,omitempty"`
}

// Team is a group of users under a manager; teams nest.
//
// Indexes for ListOptions.By: "parent", "manager".
//
// Events: team.created, team.updated, team.deleted.
type Team struct {
	Meta
	Name      string `json:"name"`
	ManagerID string `json:"manager_id,omitempty"`
	// ParentID makes the team part of a larger one; cycles are refused.
	ParentID string `json:"parent_id,omitempty"`
}

// Territory is a sales area; territories nest (country → region → city).
//
// Indexes for ListOptions.By: "parent".
//
// Events: territory.created, territory.updated, territory.deleted.
type Territory struct {
	Meta
	Name     string `json:"name"`
	ParentID string `json:"parent_id,omitempty"`
}

// SalesTarget is a planned amount for one owner, team or territory over a
// period, for plan-versus-fact reports.
//
// Indexes for ListOptions.By: "user", "team", "territory", "period_start".
//
// Events: sales_target.created, sales_target.updated, sales_target.deleted.
type SalesTarget struct {
	Meta
	// Exactly one of UserID, TeamID and TerritoryID is set.
	UserID      string `json:"user_id,omitempty"`
	TeamID      string `json:"team_id,omitempty"`
	TerritoryID string `json:"territory_id,omitempty"`
	// PeriodStart and PeriodEnd are dates (YYYY-MM-DD), both included.
	PeriodStart string `json:"period_start"`
	PeriodEnd   string `json:"period_end"`
	Amount      Money  `json:"amount"`
}

const (
	usersCollection       = "users"
	teamsCollection       = "teams"
	territoriesCollection = "territories"
	targetsCollection     = "sales_targets"
)

var userKind = newKind[User]("user",
	storage.Collection{Name: usersCollection, Indexes: []storage.Index{
		{Name: "email", Field: "email", Unique: true},
		{Name: "team", Field: "team_id"},
		{Name: "territory", Field: "territory_id"},
		{Name: "role", Field: "roles"},
	}},
	func(ctx context.Context, tx storage.ReadTx, u, prev *User, p *problems) error {
		var was User
		if prev != nil {
			was = *prev
		}
		checkText(p, "name", &u.Name)
		if u.Name == "" {
			p.add("name", "is required")
		}
		checkEmail(p, "email", &u.Email)
		for i := range u.Roles {
			checkText(p, "roles", &u.Roles[i])
			if u.Roles[i] == "" {
				p.add("roles", "a role is empty")
			}
		}
		if err := checkRef(ctx, tx, p, "team_id", teamsCollection, "team", &u.TeamID, was.TeamID); err != nil {
			return err
		}
		return checkRef(ctx, tx, p, "territory_id", territoriesCollection, "territory", &u.TerritoryID, was.TerritoryID)
	},
	func(ctx context.Context, tx storage.ReadTx, id string) error {
		if err := referencedBy(ctx, tx, "user", id, []string{teamsCollection}, "manager"); err != nil {
			return err
		}
		return referencedBy(ctx, tx, "user", id, []string{targetsCollection}, "user")
	})

var teamKind = newKind[Team]("team",
	storage.Collection{Name: teamsCollection, Indexes: []storage.Index{
		{Name: "parent", Field: "parent_id"},
		{Name: "manager", Field: "manager_id"},
	}},
	func(ctx context.Context, tx storage.ReadTx, t, prev *Team, p *problems) error {
		var was Team
		if prev != nil {
			was = *prev
		}
		checkText(p, "name", &t.Name)
		if t.Name == "" {
			p.add("name", "is required")
		}
		if err := checkRef(ctx, tx, p, "manager_id", usersCollection, "user", &t.ManagerID, was.ManagerID); err != nil {
			return err
		}
		if err := checkRef(ctx, tx, p, "parent_id", teamsCollection, "team", &t.ParentID, was.ParentID); err != nil {
			return err
		}
		return checkNoCycle(ctx, tx, p, teamsCollection, t.ID, t.ParentID)
	},
	func(ctx context.Context, tx storage.ReadTx, id string) error {
		if err := referencedBy(ctx, tx, "team", id, []string{teamsCollection}, "parent"); err != nil {
			return err
		}
		return referencedBy(ctx, tx, "team", id, []string{usersCollection, targetsCollection}, "team")
	})

var territoryKind = newKind[Territory]("territory",
	storage.Collection{Name: territoriesCollection, Indexes: []storage.Index{
		{Name: "parent", Field: "parent_id"},
	}},
	func(ctx context.Context, tx storage.ReadTx, t, prev *Territory, p *problems) error {
		var was Territory
		if prev != nil {
			was = *prev
		}
		checkText(p, "name", &t.Name)
		if t.Name == "" {
			p.add("name", "is required")
		}
		if err := checkRef(ctx, tx, p, "parent_id", territoriesCollection, "territory", &t.ParentID, was.ParentID); err != nil {
			return err
		}
		return checkNoCycle(ctx, tx, p, territoriesCollection, t.ID, t.ParentID)
	},
	func(ctx context.Context, tx storage.ReadTx, id string) error {
		if err := referencedBy(ctx, tx, "territory", id, []string{territoriesCollection}, "parent"); err != nil {
			return err
		}
		return referencedBy(ctx, tx, "territory", id, []string{usersCollection, targetsCollection}, "territory")
	})

var targetKind = newKind[SalesTarget]("sales_target",
	storage.Collection{Name: targetsCollection, Indexes: []storage.Index{
		{Name: "user", Field: "user_id"},
		{Name: "team", Field: "team_id"},
		{Name: "territory", Field: "territory_id"},
		{Name: "period_start", Field: "period_start"},
	}},
	func(ctx context.Context, tx storage.ReadTx, s, prev *SalesTarget, p *problems) error {
		var was SalesTarget
		if prev != nil {
			was = *prev
		}
		set := 0
		for _, id := range []string{s.UserID, s.TeamID, s.TerritoryID} {
			if id != "" {
				set++
			}
		}
		if set != 1 {
			p.add("user_id", "set exactly one of user_id, team_id and territory_id")
		}
		for _, r := range []struct {
			field, coll, what string
			id                *string
			was               string
		}{
			{"user_id", usersCollection, "user", &s.UserID, was.UserID},
			{"team_id", teamsCollection, "team", &s.TeamID, was.TeamID},
			{"territory_id", territoriesCollection, "territory", &s.TerritoryID, was.TerritoryID},
		} {
			if err := checkRef(ctx, tx, p, r.field, r.coll, r.what, r.id, r.was); err != nil {
				return err
			}
		}
		checkPeriod(p, "period_start", "period_end", &s.PeriodStart, &s.PeriodEnd, true)
		if s.Amount.Currency == "" {
			p.add("amount", "is required")
		} else {
			checkMoney(p, "amount", s.Amount, false)
		}
		return nil
	}, nil)

// checkPeriod validates a pair of dates, end not before start.
func checkPeriod(p *problems, startField, endField string, start, end *string, required bool) {
	checkDate(p, startField, start)
	checkDate(p, endField, end)
	if required {
		if *start == "" {
			p.add(startField, "is required")
		}
		if *end == "" {
			p.add(endField, "is required")
		}
	}
	if *start != "" && *end != "" && *end < *start {
		p.add(endField, "%s is before %s %s", *end, startField, *start)
	}
}

// checkNoCycle refuses a parent that is the record itself or one of its
// descendants.
func checkNoCycle(ctx context.Context, tx storage.ReadTx, p *problems, coll, id, parent string) error {
	if parent == "" || id == "" {
		return nil
	}
	seen := []string{id}
	for cur := parent; cur != ""; {
		if slices.Contains(seen, cur) {
			p.add("parent_id", "%s would be its own ancestor", id)
			return nil
		}
		seen = append(seen, cur)
		if len(seen) > 100 {
			p.add("parent_id", "the hierarchy is deeper than 100 levels")
			return nil
		}
		rec, err := tx.Get(ctx, coll, cur)
		if isNotFound(err) {
			return nil // reported by checkRef
		}
		if err != nil {
			return err
		}
		cur = gjsonString(rec.Body, "parent_id")
	}
	return nil
}

// Users returns the tenant's users.
func (t *Tenant) Users() *Records[User] { return &Records[User]{t: t, k: userKind} }

// Teams returns the tenant's teams.
func (t *Tenant) Teams() *Records[Team] { return &Records[Team]{t: t, k: teamKind} }

// Territories returns the tenant's territories.
func (t *Tenant) Territories() *Records[Territory] {
	return &Records[Territory]{t: t, k: territoryKind}
}

// SalesTargets returns the tenant's sales targets.
func (t *Tenant) SalesTargets() *Records[SalesTarget] {
	return &Records[SalesTarget]{t: t, k: targetKind}
}

// Members returns the IDs of the users of a team and of the teams under
// it, for reports and overdue lists by team (OverdueOptions.Owners).
func (t *Tenant) Members(ctx context.Context, teamID string) ([]string, error) {
	var out []string
	err := t.view(ctx, func(tx storage.ReadTx) error {
		if _, err := tx.Get(ctx, teamsCollection, teamID); err != nil {
			return err
		}
		queue := []string{teamID}
		seen := map[string]bool{}
		for len(queue) > 0 {
			team := queue[0]
			queue = queue[1:]
			if seen[team] {
				continue
			}
			seen[team] = true
			for _, q := range []struct{ coll, index string }{{usersCollection, "team"}, {teamsCollection, "parent"}} {
				err := scanAll(ctx, tx, q.coll, storage.Query{Index: q.index, Equal: team}, func(rec storage.Record) error {
					if q.coll == usersCollection {
						out = append(out, rec.ID)
					} else {
						queue = append(queue, rec.ID)
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("crm: team %s: %w", teamID, err)
	}
	slices.Sort(out)
	return out, nil
}
