package analytics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// Slice narrows a report to some records. A record is kept when it
// matches every field that is set. Each report's query says which fields
// it takes; a report refuses (ErrInvalid) a field it cannot apply rather
// than ignore it.
type Slice struct {
	// Owners keeps the records of these owners. Stage reports use the
	// owner at the time of each move.
	Owners []string
	// Team keeps the records owned by the members of this team and of its
	// sub-teams (crm.Tenant.Members).
	Team string
	// Territory keeps the records owned by the users of this territory and
	// of its sub-territories (crm.User.TerritoryID).
	Territory string
	// Industry keeps the records whose account (the record's AccountID;
	// an account's own) has this industry now.
	Industry string
	// Source keeps the leads from this source, and the deals converted
	// from them (crm.Deal.LeadID).
	Source string
	// Campaign keeps the leads of this campaign (an ID), the deals
	// converted from them, and the orders that name it.
	Campaign string
	// Product keeps the order lines of this product (its SKU, or its
	// product ID for lines without one).
	Product string
}

// dims names the fields of a Slice, as a set.
type dims uint8

const (
	dimOwner dims = 1 << iota // Owners, Team, Territory
	dimIndustry
	dimSource
	dimCampaign
	dimProduct
)

// check refuses the fields of s that report cannot apply.
func (s Slice) check(report string, allowed dims) error {
	var bad []string
	for _, f := range []struct {
		name string
		set  bool
		dim  dims
	}{
		{"Owners", len(s.Owners) > 0, dimOwner}, {"Team", s.Team != "", dimOwner},
		{"Territory", s.Territory != "", dimOwner}, {"Industry", s.Industry != "", dimIndustry},
		{"Source", s.Source != "", dimSource}, {"Campaign", s.Campaign != "", dimCampaign},
		{"Product", s.Product != "", dimProduct},
	} {
		if f.set && allowed&f.dim == 0 {
			bad = append(bad, f.name)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: the %s report cannot be sliced by %s", ErrInvalid, report, strings.Join(bad, ", "))
	}
	return nil
}

// slicer applies a Slice to the records a report reads. It loads what
// the attribute fields need (accounts' industries, leads' origins) up
// front, so that its checks never read the store: they run inside
// record visits, where a nested read could wait on a writer that waits
// on the visit.
type slicer struct {
	s Slice
	// owners is the set of owners to keep; nil keeps everyone's.
	owners map[string]bool
	// industry holds the accounts with the slice's industry; origin the
	// leads with its source and campaign.
	industry, origin map[string]bool
	// records, when not nil, is the set of records of a stage report's
	// kind that match the attribute fields.
	records map[string]bool
}

// slicer checks s for report, resolves its owners and loads what its
// attribute fields need.
func (r *Reports) slicer(ctx context.Context, s Slice, report string, allowed dims) (*slicer, error) {
	if err := s.check(report, allowed); err != nil {
		return nil, err
	}
	sl := &slicer{s: s}
	sets := [][]string{}
	if len(s.Owners) > 0 {
		sets = append(sets, s.Owners)
	}
	if s.Team != "" {
		members, err := r.t.Members(ctx, s.Team)
		if errors.Is(err, crm.ErrNotFound) {
			return nil, fmt.Errorf("%w: no team %q", ErrInvalid, s.Team)
		}
		if err != nil {
			return nil, err
		}
		sets = append(sets, members)
	}
	if s.Territory != "" {
		if _, err := r.t.Territories().Get(ctx, s.Territory); errors.Is(err, crm.ErrNotFound) {
			return nil, fmt.Errorf("%w: no territory %q", ErrInvalid, s.Territory)
		} else if err != nil {
			return nil, err
		}
		users, err := r.territoryUsers(ctx)
		if err != nil {
			return nil, err
		}
		sets = append(sets, users(s.Territory))
	}
	// The owners in every set given.
	for i, set := range sets {
		next := map[string]bool{}
		for _, o := range set {
			if i == 0 || sl.owners[o] {
				next[o] = true
			}
		}
		sl.owners = next
	}
	opts := crm.EachOptions{Archived: crm.ArchivedIncluded}
	if s.Industry != "" {
		sl.industry = map[string]bool{}
		err := r.t.Accounts().Each(ctx, crm.EachOptions{By: "industry", Value: s.Industry, Archived: crm.ArchivedIncluded}, func(a *crm.Account) error {
			sl.industry[a.ID] = true
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if s.Source != "" || s.Campaign != "" {
		sl.origin = map[string]bool{}
		err := r.t.Leads().Each(ctx, opts, func(l *crm.Lead) error {
			if sl.matchOrigin(l.Source, l.CampaignID) {
				sl.origin[l.ID] = true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return sl, nil
}

// owner reports whether records of owner o are kept.
func (sl *slicer) owner(o string) bool { return sl.owners == nil || sl.owners[o] }

// attributes reports whether the slice looks at records' attributes, not
// only their owners.
func (sl *slicer) attributes() bool {
	return sl.s.Industry != "" || sl.s.Source != "" || sl.s.Campaign != ""
}

// inIndustry reports whether the account has the slice's industry.
func (sl *slicer) inIndustry(accountID string) bool {
	return sl.industry == nil || sl.industry[accountID]
}

// matchOrigin reports whether a lead's source and campaign match.
func (sl *slicer) matchOrigin(source, campaign string) bool {
	return (sl.s.Source == "" || source == sl.s.Source) && (sl.s.Campaign == "" || campaign == sl.s.Campaign)
}

// lead reports whether a lead matches the slice's attributes.
func (sl *slicer) lead(l *crm.Lead) bool {
	return sl.matchOrigin(l.Source, l.CampaignID) && sl.inIndustry(l.AccountID)
}

// deal reports whether a deal matches the slice's attributes: its
// account's industry, and the source and campaign of its lead.
func (sl *slicer) deal(d *crm.Deal) bool {
	return (sl.origin == nil || sl.origin[d.LeadID]) && sl.inIndustry(d.AccountID)
}

// order reports whether an order matches the slice: its owner, campaign
// and account's industry.
func (sl *slicer) order(o *crm.Order) bool {
	return sl.owner(o.Owner) && (sl.s.Campaign == "" || o.CampaignID == sl.s.Campaign) && sl.inIndustry(o.AccountID)
}

// line reports whether an order line is of the slice's product.
func (sl *slicer) line(l *crm.OrderLine) bool {
	return sl.s.Product == "" || cmp.Or(l.SKU, l.ProductID) == sl.s.Product
}

// selectRecords fills sl.records with the records of kind that match the
// slice's attributes; it leaves it nil when the slice has none.
func (sl *slicer) selectRecords(ctx context.Context, t *crm.Tenant, kind pipeline.Kind) error {
	if !sl.attributes() {
		return nil
	}
	if kind != pipeline.KindDeal && kind != pipeline.KindLead && (sl.s.Source != "" || sl.s.Campaign != "") {
		return fmt.Errorf("%w: %s records have no source or campaign to slice by", ErrInvalid, kind)
	}
	sl.records = map[string]bool{}
	opts := crm.EachOptions{Archived: crm.ArchivedIncluded}
	switch kind {
	case pipeline.KindDeal:
		return t.Deals().Each(ctx, opts, func(d *crm.Deal) error {
			sl.records[d.ID] = sl.deal(d)
			return nil
		})
	case pipeline.KindLead:
		return t.Leads().Each(ctx, opts, func(l *crm.Lead) error {
			sl.records[l.ID] = sl.lead(l)
			return nil
		})
	case pipeline.KindAccount:
		for id := range sl.industry {
			sl.records[id] = true
		}
		return nil
	case pipeline.KindCase:
		return t.Cases().Each(ctx, opts, func(c *crm.Case) error {
			sl.records[c.ID] = sl.inIndustry(c.AccountID)
			return nil
		})
	}
	return fmt.Errorf("%w: cannot slice %s records", ErrInvalid, kind)
}

// customerDims are the Slice fields the customer reports (RFM, CLV,
// cohorts, satisfaction) take: the contact's owner and account.
const customerDims = dimOwner | dimIndustry

// customers returns the contacts the slice keeps, by their owner and
// their account's industry now; nil when it keeps everyone.
func (sl *slicer) customers(ctx context.Context, t *crm.Tenant) (map[string]bool, error) {
	if sl.owners == nil && sl.industry == nil {
		return nil, nil
	}
	keep := map[string]bool{}
	err := t.Contacts().Each(ctx, crm.EachOptions{Archived: crm.ArchivedIncluded}, func(c *crm.Contact) error {
		if sl.owner(c.Owner) && sl.inIndustry(c.AccountID) {
			keep[c.ID] = true
		}
		return nil
	})
	return keep, err
}

// pushable reports whether a pushdown can apply the slice: owners only,
// and at least one of them.
func (sl *slicer) pushable() bool {
	return sl.records == nil && (sl.owners == nil || len(sl.owners) > 0)
}

// keep reports whether a stage fact of record id with owner o is kept.
func (sl *slicer) keep(id, o string) bool {
	return sl.owner(o) && (sl.records == nil || sl.records[id])
}
