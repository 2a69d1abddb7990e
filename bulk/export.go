package bulk

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rapportcrm/rapport/crm"
)

// ExportContacts writes every contact of the tenant, archived ones too.
// CSV has the columns
// ImportContacts reads (custom fields as custom.<key>); JSON Lines has one
// full record per line. Exports read page by page, so a very large export
// is not one snapshot.
func ExportContacts(ctx context.Context, t *crm.Tenant, w io.Writer, format Format) error {
	return export(ctx, w, format, t.Contacts(),
		[]string{"id", "first_name", "last_name", "email", "phone", "title", "external_id", "country", "account_id", "owner", "tags"},
		func(c *crm.Contact) ([]string, crm.Meta) {
			return []string{c.ID, c.FirstName, c.LastName, c.Email, c.Phone, c.Title, c.ExternalID, c.Country, c.AccountID, c.Owner, strings.Join(c.Tags, ";")}, c.Meta
		})
}

// ExportAccounts writes every account of the tenant, as ExportContacts.
func ExportAccounts(ctx context.Context, t *crm.Tenant, w io.Writer, format Format) error {
	return export(ctx, w, format, t.Accounts().Records,
		[]string{"id", "name", "domain", "industry", "type", "employees", "territory", "external_id", "owner", "tags"},
		func(a *crm.Account) ([]string, crm.Meta) {
			return []string{a.ID, a.Name, a.Domain, a.Industry, string(a.Type), strconv.Itoa(a.Employees), a.Territory, a.ExternalID, a.Owner, strings.Join(a.Tags, ";")}, a.Meta
		})
}

// ExportProducts writes every product of the tenant, as ExportContacts.
func ExportProducts(ctx context.Context, t *crm.Tenant, w io.Writer, format Format) error {
	return export(ctx, w, format, t.Products(),
		[]string{"id", "sku", "name", "unit", "category", "owner", "tags"},
		func(p *crm.Product) ([]string, crm.Meta) {
			return []string{p.ID, p.SKU, p.Name, p.Unit, p.Category, p.Owner, strings.Join(p.Tags, ";")}, p.Meta
		})
}

// ExportOrders writes every order of the tenant. CSV has one row per order
// line with the columns ImportOrders reads, so an export imports again
// unchanged; customer_external_id is the customer's external ID, or its
// contact ID when it has none. JSON Lines has one full order per line.
func ExportOrders(ctx context.Context, t *crm.Tenant, w io.Writer, format Format) error {
	switch format {
	case JSONL:
		return export[crm.Order](ctx, w, format, t.Orders(), nil, nil)
	case CSV, "":
	default:
		return fmt.Errorf("%w: format %q: want csv or jsonl", ErrInvalid, format)
	}
	bw := bufio.NewWriter(w)
	cw := csv.NewWriter(bw)
	if err := cw.Write(orderFields); err != nil {
		return err
	}
	externals := map[string]string{}
	opts := crm.ListOptions{Limit: 1000, Archived: crm.ArchivedIncluded}
	for {
		pg, err := t.Orders().List(ctx, opts)
		if err != nil {
			return err
		}
		var unknown []string
		for _, o := range pg.Items {
			if _, ok := externals[o.ContactID]; !ok && o.ContactID != "" {
				unknown = append(unknown, o.ContactID)
			}
		}
		for _, id := range unknown {
			externals[id] = id
			c, err := t.Contacts().Get(ctx, id)
			switch {
			case err == nil && c.ExternalID != "":
				externals[id] = c.ExternalID
			case err != nil && !errors.Is(err, crm.ErrNotFound):
				return err
			}
		}
		for _, o := range pg.Items {
			for _, l := range o.Lines {
				err := cw.Write([]string{o.Number, externals[o.ContactID], o.OrderedAt.Format(time.RFC3339), l.SKU, l.Description,
					strconv.FormatInt(l.Quantity, 10), decimal(l.UnitPrice), o.Currency, o.Country, strconv.FormatBool(o.Refund)})
				if err != nil {
					return err
				}
			}
		}
		if pg.Next == "" {
			break
		}
		opts.Cursor = pg.Next
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// decimal writes an amount in major units ("2.55"), as ParseMoney reads it.
func decimal(m crm.Money) string {
	scale, err := crm.CurrencyScale(m.Currency)
	if err != nil || scale == 0 {
		return strconv.FormatInt(m.Amount, 10)
	}
	sign, a := "", m.Amount
	if a < 0 {
		sign, a = "-", -a
	}
	s := strconv.FormatUint(uint64(a), 10)
	for len(s) <= scale {
		s = "0" + s
	}
	return sign + s[:len(s)-scale] + "." + s[len(s)-scale:]
}

// export writes every record of recs: JSON Lines, or CSV with columns and
// custom.<key> columns for the custom fields found (in a first pass, so
// that records are never all in memory).
func export[T any](ctx context.Context, w io.Writer, format Format, recs *crm.Records[T], columns []string, cells func(*T) ([]string, crm.Meta)) error {
	if format != JSONL && format != CSV && format != "" {
		return fmt.Errorf("%w: format %q: want csv or jsonl", ErrInvalid, format)
	}
	bw := bufio.NewWriter(w)
	each := func(fn func(*T) error) error {
		opts := crm.ListOptions{Limit: 1000, Archived: crm.ArchivedIncluded}
		for {
			pg, err := recs.List(ctx, opts)
			if err != nil {
				return err
			}
			for i := range pg.Items {
				if err := fn(&pg.Items[i]); err != nil {
					return err
				}
			}
			if pg.Next == "" {
				return nil
			}
			opts.Cursor = pg.Next
		}
	}
	if format == JSONL {
		err := each(func(r *T) error {
			raw, err := json.Marshal(r)
			if err != nil {
				return err
			}
			bw.Write(raw)
			return bw.WriteByte('\n')
		})
		if err != nil {
			return err
		}
		return bw.Flush()
	}
	keys := map[string]bool{}
	if err := each(func(r *T) error {
		_, m := cells(r)
		for k := range m.Custom {
			keys[k] = true
		}
		return nil
	}); err != nil {
		return err
	}
	custom := make([]string, 0, len(keys))
	for k := range keys {
		custom = append(custom, k)
	}
	sort.Strings(custom)
	cw := csv.NewWriter(bw)
	header := append([]string(nil), columns...)
	for _, k := range custom {
		header = append(header, "custom."+k)
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	err := each(func(r *T) error {
		row, m := cells(r)
		for _, k := range custom {
			switch v := m.Custom[k].(type) {
			case nil:
				row = append(row, "")
			case string:
				row = append(row, v)
			default:
				raw, _ := json.Marshal(v)
				row = append(row, string(raw))
			}
		}
		return cw.Write(row)
	})
	if err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}
