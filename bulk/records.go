package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/rapportcrm/rapport/crm"
)

// ImportContacts imports contacts. Fields: first_name, last_name, email,
// phone, title, external_id, country, owner, tags (separated by ";") and
// custom.<key> for custom fields (as text). A contact whose external_id
// (or, without one, email) is stored already counts as existing.
func ImportContacts(ctx context.Context, t *crm.Tenant, r io.Reader, opts Options) (Result, error) {
	schema, err := schemaOf(ctx, t, "contact")
	if err != nil {
		return Result{}, err
	}
	return importRecords(ctx, r, opts, t.Contacts(), func(rw row) (crm.Contact, error) {
		return crm.Contact{
			Meta:      rowMeta(rw, schema),
			FirstName: rw.get("first_name"), LastName: rw.get("last_name"), Email: rw.get("email"),
			Phone: rw.get("phone"), Title: rw.get("title"), ExternalID: normaliseID(rw.get("external_id")),
			Country: rw.get("country"),
		}, nil
	}, func(c *crm.Contact) (string, string) {
		if c.ExternalID != "" {
			return "external_id", c.ExternalID
		}
		return "email", strings.ToLower(c.Email)
	})
}

// ImportAccounts imports accounts. Fields: name, domain, industry, type
// (b2b, b2c, b2g), employees, territory, external_id, owner, tags and
// custom.<key>. An account whose external_id (or, without one, domain) is
// stored already counts as existing.
func ImportAccounts(ctx context.Context, t *crm.Tenant, r io.Reader, opts Options) (Result, error) {
	schema, err := schemaOf(ctx, t, "account")
	if err != nil {
		return Result{}, err
	}
	return importRecords(ctx, r, opts, t.Accounts().Records, func(rw row) (crm.Account, error) {
		a := crm.Account{
			Meta: rowMeta(rw, schema),
			Name: rw.get("name"), Domain: rw.get("domain"), Industry: rw.get("industry"),
			Type: crm.AccountType(strings.ToLower(rw.get("type"))), Territory: rw.get("territory"),
			ExternalID: normaliseID(rw.get("external_id")),
		}
		if s := rw.get("employees"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return a, fmt.Errorf("employees %q is not a whole number", s)
			}
			a.Employees = n
		}
		return a, nil
	}, func(a *crm.Account) (string, string) {
		if a.ExternalID != "" {
			return "external_id", a.ExternalID
		}
		return "domain", canonicalDomain(a.Domain)
	})
}

// ImportProducts imports products. Fields: sku, name, unit, category,
// owner, tags and custom.<key>. A product whose SKU is stored already
// counts as existing.
func ImportProducts(ctx context.Context, t *crm.Tenant, r io.Reader, opts Options) (Result, error) {
	schema, err := schemaOf(ctx, t, "product")
	if err != nil {
		return Result{}, err
	}
	return importRecords(ctx, r, opts, t.Products(), func(rw row) (crm.Product, error) {
		return crm.Product{Meta: rowMeta(rw, schema), SKU: rw.get("sku"), Name: rw.get("name"), Unit: rw.get("unit"), Category: rw.get("category")}, nil
	}, func(p *crm.Product) (string, string) { return "sku", strings.TrimSpace(p.SKU) })
}

// schemaOf returns the entity's custom-field schema, or nil.
func schemaOf(ctx context.Context, t *crm.Tenant, entity string) (*crm.Schema, error) {
	s, err := t.Schemas().Get(ctx, entity)
	if errors.Is(err, crm.ErrNotFound) {
		return nil, nil
	}
	return s, err
}

// typed converts the text of a custom column to the value its schema
// field takes: numbers, booleans, lists ("a;b" or a JSON list) and money
// (JSON). Text that does not convert is passed on, for the engine to
// report.
func typed(schema *crm.Schema, key, text string) any {
	if schema == nil {
		return text
	}
	for _, f := range schema.Fields {
		if f.Key != key {
			continue
		}
		switch f.Type {
		case crm.FieldNumber:
			if json.Valid([]byte(text)) {
				return json.Number(text)
			}
		case crm.FieldBool:
			if b, err := strconv.ParseBool(text); err == nil {
				return b
			}
		case crm.FieldMultiEnum:
			var list []string
			if json.Unmarshal([]byte(text), &list) == nil {
				return list
			}
			return strings.Split(text, ";")
		case crm.FieldMoney:
			var m map[string]any
			dec := json.NewDecoder(strings.NewReader(text))
			dec.UseNumber()
			if dec.Decode(&m) == nil {
				return m
			}
		}
	}
	return text
}

// rowMeta reads owner, tags and custom.<key> fields, typed by schema.
func rowMeta(rw row, schema *crm.Schema) crm.Meta {
	m := crm.Meta{Owner: rw.get("owner")}
	if tags := rw.get("tags"); tags != "" {
		m.Tags = strings.Split(tags, ";")
	}
	for k, v := range rw.fields {
		if key, ok := strings.CutPrefix(k, "custom."); ok && strings.TrimSpace(v) != "" {
			if m.Custom == nil {
				m.Custom = map[string]any{}
			}
			m.Custom[key] = typed(schema, key, strings.TrimSpace(v))
		}
	}
	return m
}

// canonicalDomain normalises a domain as the engine does, for the
// existence check; the engine's validation has the final word.
func canonicalDomain(d string) string {
	d = strings.ToLower(strings.TrimSpace(d))
	d = strings.TrimPrefix(strings.TrimPrefix(d, "https://"), "http://")
	d = strings.TrimPrefix(d, "www.")
	return strings.TrimSuffix(d, "/")
}

// pendingRecord is a parsed row waiting for its batch.
type pendingRecord[T any] struct {
	rec  T
	line int
}

// importRecords reads rows, parses them with parse, and stores those
// whose key (index, value) is not stored yet, a batch per transaction.
func importRecords[T any](ctx context.Context, r io.Reader, opts Options, recs *crm.Records[T],
	parse func(row) (T, error), key func(*T) (index, value string)) (Result, error) {
	opts = opts.withDefaults()
	var res Result
	rows, err := newRowReader(r, opts.Format, opts.Mapping)
	if err != nil {
		return res, err
	}
	batch := make([]pendingRecord[T], 0, opts.BatchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		defer func() { batch = batch[:0] }()
		byIndex := map[string][]string{}
		for i := range batch {
			if ix, v := key(&batch[i].rec); v != "" {
				byIndex[ix] = append(byIndex[ix], v)
			}
		}
		stored := map[string]bool{}
		for ix, values := range byIndex {
			found, err := recs.FindBy(ctx, ix, values)
			if err != nil {
				return err
			}
			for v := range found {
				stored[ix+"\x00"+v] = true
			}
		}
		todo := make([]pendingRecord[T], 0, len(batch))
		news := make([]T, 0, len(batch))
		for _, p := range batch {
			if ix, v := key(&p.rec); v != "" && stored[ix+"\x00"+v] {
				res.Existing++
				continue
			}
			todo = append(todo, p)
			news = append(news, p.rec)
		}
		_, errs, err := recs.CreateEach(ctx, news)
		if err != nil {
			return err
		}
		for i, e := range errs {
			if e == nil {
				res.Created++
				continue
			}
			if err := res.report(opts, &RowError{Line: todo[i].line, Err: e}, 1); err != nil {
				return err
			}
		}
		if opts.Progress != nil {
			opts.Progress(Progress{Rows: res.Rows, Stored: res.Created})
		}
		return nil
	}
	for {
		rw, err := rows.next()
		if errors.Is(err, io.EOF) {
			break
		}
		res.Rows++
		var re *RowError
		if errors.As(err, &re) {
			if err := res.report(opts, re, 1); err != nil {
				return res, err
			}
			continue
		}
		if err != nil {
			return res, err
		}
		rec, err := parse(rw)
		if err != nil {
			if err := res.report(opts, &RowError{Line: rw.line, Err: err}, 1); err != nil {
				return res, err
			}
			continue
		}
		batch = append(batch, pendingRecord[T]{rec: rec, line: rw.line})
		if len(batch) == opts.BatchSize {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	return res, nil
}
