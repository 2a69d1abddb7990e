package crm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"go.yaml.in/yaml/v3"

	"github.com/rapportcrm/rapport/storage"
)

// FieldType is the type of a custom field.
type FieldType string

// Custom field types and the JSON values they take.
const (
	FieldString    FieldType = "string"     // one line of text, at most MaxTextLen characters
	FieldText      FieldType = "text"       // long text, line breaks allowed
	FieldNumber    FieldType = "number"     // a JSON number, kept exact
	FieldMoney     FieldType = "money"      // {"amount": minor units, "currency": "EUR"}
	FieldDate      FieldType = "date"       // "YYYY-MM-DD"
	FieldBool      FieldType = "bool"       // true or false
	FieldEnum      FieldType = "enum"       // one of Options
	FieldMultiEnum FieldType = "multi_enum" // a list of distinct Options
	FieldReference FieldType = "reference"  // the ID of a record of kind Ref
)

// FieldDef defines one custom field.
type FieldDef struct {
	// Key is the field's key in Meta.Custom: 1-64 of [a-z0-9_], starting
	// with a letter.
	Key   string    `json:"key" yaml:"key"`
	Label string    `json:"label,omitempty" yaml:"label,omitempty"`
	Type  FieldType `json:"type" yaml:"type"`
	// Required fields must have a value on every write; a Default fills
	// them when the record has none.
	Required bool `json:"required,omitempty" yaml:"required,omitempty"`
	Default  any  `json:"default,omitempty" yaml:"default,omitempty"`
	// Options are the allowed values of enum and multi_enum fields.
	Options []string `json:"options,omitempty" yaml:"options,omitempty"`
	// Ref is the entity a reference field points at: "contact",
	// "account", "lead", "deal", "case", "contract", "product" or "order".
	Ref string `json:"ref,omitempty" yaml:"ref,omitempty"`
}

// Schema is a tenant's custom fields for one entity. Once an entity has a
// schema, every write of its records is checked against it: unknown keys,
// values of the wrong type, missing required values are a
// *ValidationError naming the field as "custom.<key>". Entities without a
// schema take any custom values.
//
// Every custom value is indexed: List with ListOptions{By: "custom.<key>",
// Value: v} (numbers in their JSON form, booleans as "true"/"false",
// multi_enum once per option, money not indexed).
type Schema struct {
	// Entity is "contact", "account", "lead", "deal", "case", "contract",
	// "activity", "interaction", "product" or "order".
	Entity string     `json:"entity" yaml:"entity"`
	Fields []FieldDef `json:"fields" yaml:"fields"`
}

// ErrSchemaInUse is wrapped by Schemas.Save when a change would orphan
// stored values: removing a field, changing its type or reference, or
// dropping an enum option that records use, or making a field required
// that records lack.
var ErrSchemaInUse = errors.New("crm: schema change would orphan stored data")

const schemasCollection = "schemas"

var schemaCollection = storage.Collection{Name: schemasCollection}

// customIndex indexes every scalar custom value as key ‖ sep ‖ value.
func customIndex(body []byte) ([]string, error) {
	custom := gjson.GetBytes(body, "custom")
	if !custom.IsObject() {
		return nil, nil
	}
	var out []string
	custom.ForEach(func(k, v gjson.Result) bool {
		for _, val := range indexValues(json.RawMessage(v.Raw)) {
			if s := k.String() + sep + val; len(s) <= storage.MaxIndexValueLen && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return true
	})
	return out, nil
}

// indexValues returns the index values of one custom value: strings as
// they are, numbers and booleans in JSON form, each element of a list of
// strings; nothing for objects.
func indexValues(raw json.RawMessage) []string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil && !strings.Contains(s, "\x00") {
			return []string{s}
		}
	case '[':
		var list []string
		if json.Unmarshal(raw, &list) == nil {
			return slices.DeleteFunc(list, func(s string) bool { return strings.Contains(s, "\x00") })
		}
	case '{', 'n':
	default:
		return []string{string(raw)}
	}
	return nil
}

// Schemas stores a tenant's custom-field schemas, one per entity.
type Schemas struct{ t *Tenant }

// Schemas returns the tenant's custom-field schemas.
func (t *Tenant) Schemas() *Schemas { return &Schemas{t: t} }

// Schemas returns the default tenant's custom-field schemas.
func (e *Engine) Schemas() *Schemas { return e.Default().Schemas() }

// entityCollections maps entity names to their collections.
var entityCollections = map[string]string{
	"contact": contactsCollection, "account": accountsCollection, "lead": leadsCollection, "deal": dealsCollection,
	"case": casesCollection, "contract": contractsCollection, "activity": activitiesCollection,
	"interaction": interactionsCollection, "product": productsCollection, "order": ordersCollection,
	"user": usersCollection, "team": teamsCollection, "territory": territoriesCollection,
	"campaign": campaignsCollection, "price_list": priceListsCollection, "sales_target": targetsCollection,
	"survey_response": surveysCollection,
}

// Validate checks a schema on its own: the entity, keys, types, options,
// references and defaults.
func (s *Schema) Validate() error {
	var p problems
	if _, ok := entityCollections[s.Entity]; !ok {
		p.add("entity", "%q is not an entity with custom fields", s.Entity)
	}
	seen := map[string]bool{}
	for i := range s.Fields {
		f := &s.Fields[i]
		name := "fields." + f.Key
		if !customKeyRE.MatchString(f.Key) {
			p.add(fmt.Sprintf("fields[%d].key", i), "%q: want 1-64 of [a-z0-9_], starting with a letter", f.Key)
		}
		if seen[f.Key] {
			p.add(name, "duplicate key")
		}
		seen[f.Key] = true
		switch f.Type {
		case FieldString, FieldText, FieldNumber, FieldMoney, FieldDate, FieldBool:
		case FieldEnum, FieldMultiEnum:
			if len(f.Options) == 0 {
				p.add(name, "an %s field needs options", f.Type)
			}
			for j, o := range f.Options {
				if o == "" || !isText(o, MaxTextLen) || slices.Contains(f.Options[:j], o) {
					p.add(name, "option %q: want distinct non-empty text", o)
				}
			}
		case FieldReference:
			if _, ok := entityCollections[f.Ref]; !ok {
				p.add(name, "ref %q: want one of contact, account, lead, deal, case, contract, activity, interaction, product, order", f.Ref)
			}
		default:
			p.add(name, "type %q: want string, text, number, money, date, bool, enum, multi_enum or reference", f.Type)
		}
		if f.Type != FieldReference && f.Ref != "" {
			p.add(name, "ref is for reference fields")
		}
		if f.Default != nil {
			if f.Type == FieldReference {
				p.add(name, "a reference field cannot have a default")
			} else if _, err := f.check(f.Default); err != nil {
				p.add(name, "default: %v", err)
			}
		}
	}
	if len(p) > 0 {
		return &ValidationError{Entity: "schema", ID: s.Entity, Fields: p}
	}
	return nil
}

// check validates a value of the field and returns it in stored form.
func (f *FieldDef) check(v any) (any, error) {
	switch f.Type {
	case FieldString, FieldText:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want text, not %T", v)
		}
		if f.Type == FieldString && !isText(s, MaxTextLen) {
			return nil, fmt.Errorf("want at most %d printable characters on one line", MaxTextLen)
		}
		var p problems
		checkLongText(&p, "", s)
		if len(p) > 0 {
			return nil, errors.New(p[0].Message)
		}
		return s, nil
	case FieldNumber:
		n, err := number(v)
		if err != nil {
			return nil, err
		}
		return n, nil
	case FieldMoney:
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		var m Money
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf(`want {"amount": minor units, "currency": "EUR"}: %v`, err)
		}
		if _, err := CurrencyScale(m.Currency); err != nil {
			return nil, err
		}
		return m, nil
	case FieldDate:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a date YYYY-MM-DD, not %T", v)
		}
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return nil, fmt.Errorf("%q is not a date (YYYY-MM-DD)", s)
		}
		return s, nil
	case FieldBool:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("want true or false, not %T", v)
		}
		return b, nil
	case FieldEnum:
		s, ok := v.(string)
		if !ok || !slices.Contains(f.Options, s) {
			return nil, fmt.Errorf("%v: want one of %s", v, strings.Join(f.Options, ", "))
		}
		return s, nil
	case FieldMultiEnum:
		list, ok := v.([]any)
		if !ok {
			if ss, isStrings := v.([]string); isStrings {
				for _, s := range ss {
					list = append(list, s)
				}
				ok = true
			}
		}
		if !ok {
			return nil, fmt.Errorf("want a list of options, not %T", v)
		}
		out := make([]string, 0, len(list))
		for _, e := range list {
			s, ok := e.(string)
			if !ok || !slices.Contains(f.Options, s) {
				return nil, fmt.Errorf("%v: want options from %s", e, strings.Join(f.Options, ", "))
			}
			if slices.Contains(out, s) {
				return nil, fmt.Errorf("%q is listed twice", s)
			}
			out = append(out, s)
		}
		return out, nil
	case FieldReference:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a record ID, not %T", v)
		}
		if err := storage.ValidateID("reference", s); err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown type %q", f.Type)
}

// number returns v as an exact json.Number.
func number(v any) (json.Number, error) {
	var n json.Number
	switch x := v.(type) {
	case json.Number:
		n = x
	case int:
		n = json.Number(strconv.Itoa(x))
	case int64:
		n = json.Number(strconv.FormatInt(x, 10))
	case float64:
		n = json.Number(strconv.FormatFloat(x, 'g', -1, 64))
	case string:
		return "", fmt.Errorf("want a number, not the text %q", x)
	default:
		return "", fmt.Errorf("want a number, not %T", v)
	}
	var probe any
	if json.Unmarshal([]byte(n), &probe) != nil {
		return "", fmt.Errorf("%q is not a finite number", string(n))
	}
	if _, isNum := probe.(float64); !isNum {
		return "", fmt.Errorf("%q is not a number", string(n))
	}
	return n, nil
}

// checkCustom validates m.Custom against the entity's schema, if any, and
// applies defaults.
func (r *Records[T]) checkCustom(ctx context.Context, tx storage.ReadTx, m *Meta, prev *Meta, p *problems) error {
	s, err := r.t.schema(ctx, tx, r.k.name)
	if err != nil || s == nil {
		return err
	}
	m.Custom = maps.Clone(m.Custom) // defaults and typed values must not reach the caller's map
	for k := range m.Custom {
		if !slices.ContainsFunc(s.Fields, func(f FieldDef) bool { return f.Key == k }) {
			p.add("custom."+k, "no such field in the %s schema", r.k.name)
		}
	}
	for i := range s.Fields {
		f := &s.Fields[i]
		v, ok := m.Custom[f.Key]
		if !ok || v == nil {
			if f.Default != nil {
				if m.Custom == nil {
					m.Custom = map[string]any{}
				}
				m.Custom[f.Key], _ = f.check(f.Default)
			} else if f.Required {
				p.add("custom."+f.Key, "is required")
			}
			continue
		}
		stored, err := f.check(v)
		if err != nil {
			p.add("custom."+f.Key, "%v", err)
			continue
		}
		m.Custom[f.Key] = stored
		if f.Type == FieldReference {
			id := stored.(string)
			was := ""
			if prev != nil {
				was, _ = prev.Custom[f.Key].(string)
			}
			if err := checkRef(ctx, tx, p, "custom."+f.Key, entityCollections[f.Ref], f.Ref, &id, was); err != nil {
				return err
			}
		}
	}
	return nil
}

// schema returns the stored schema of an entity, or nil. In a deferTx it
// is the engine's copy, checked at commit, when the engine has one.
func (t *Tenant) schema(ctx context.Context, tx storage.ReadTx, entity string) (*Schema, error) {
	if dt, ok := tx.(*deferTx); ok {
		if s, ok, err := t.cachedSchemaFor(ctx, dt, entity); ok || err != nil {
			return s, err
		}
	}
	key := schemaKey(t.id, entity)
	rec, err := tx.Get(ctx, schemasCollection, entity)
	if errors.Is(err, storage.ErrNotFound) {
		t.e.schemas.LoadOrStore(key, &cachedSchema{})
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cached, _ := t.e.schemas.Load(key)
	if c, ok := cached.(*cachedSchema); ok && c.version == rec.Version && bytes.Equal(c.body, rec.Body) {
		return c.s, nil
	}
	var s Schema
	if err := decodeSchema(rec.Body, &s); err != nil {
		return nil, fmt.Errorf("schema %s: %w", entity, err)
	}
	// A transaction with an older snapshot does not replace a newer copy.
	if c, ok := cached.(*cachedSchema); !ok || c.version <= rec.Version {
		t.e.schemas.Store(key, &cachedSchema{version: rec.Version, body: bytes.Clone(rec.Body), s: &s})
	}
	return &s, nil
}

func schemaKey(tenant, entity string) pipelineKey {
	return pipelineKey{tenant: tenant, name: "\x00schema/" + entity}
}

// cachedSchema is a schema as stored at version (0 and s nil: there is
// none). Schemas are never deleted, so their versions only grow, and a
// version names one body.
type cachedSchema struct {
	version uint64
	body    []byte
	s       *Schema
}

// decodeSchema reads a stored schema, keeping numbers exact.
func decodeSchema(body []byte, s *Schema) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	return dec.Decode(s)
}

// Get returns the schema of an entity; an entity without one gives an
// error wrapping ErrNotFound.
func (s *Schemas) Get(ctx context.Context, entity string) (*Schema, error) {
	var out *Schema
	err := s.t.view(ctx, func(tx storage.ReadTx) error {
		sc, err := s.t.schema(ctx, tx, entity)
		if err == nil && sc == nil {
			err = fmt.Errorf("%w: no schema for %q", ErrNotFound, entity)
		}
		out = sc
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("crm: schema: %w", err)
	}
	cp := *out
	cp.Fields = slices.Clone(out.Fields)
	return &cp, nil
}

// Save stores a schema, replacing the entity's previous one. The new
// schema must be valid and must not orphan stored values (ErrSchemaInUse
// says which field and which record). Records written before a field
// gained a default keep lacking it until they are next written.
func (s *Schemas) Save(ctx context.Context, sc *Schema) error {
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("crm: save schema: %w", err)
	}
	body, err := json.Marshal(sc)
	if err != nil {
		return fmt.Errorf("crm: save schema %s: %w", sc.Entity, err)
	}
	coll := entityCollections[sc.Entity]
	return s.t.update(ctx, func(tx storage.Tx) error {
		var version uint64
		prev := &Schema{Entity: sc.Entity}
		old, err := tx.Get(ctx, schemasCollection, sc.Entity)
		switch {
		case err == nil:
			version = old.Version
			if err := decodeSchema(old.Body, prev); err != nil {
				return err
			}
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		if err := checkOrphans(ctx, tx, coll, sc); err != nil {
			return err
		}
		if _, err := tx.Put(ctx, schemasCollection, storage.Record{ID: sc.Entity, Version: version, Body: body}); err != nil {
			return err
		}
		return tx.Append(ctx, storage.Event{Type: "schema.saved", Collection: schemasCollection, RecordID: sc.Entity, Time: s.t.e.clock.Now().UTC()})
	})
}

// checkOrphans refuses a schema, next, that stored records would not
// pass: a custom value with no field, or one the field's definition no
// longer accepts (a changed type, a dropped option), or a missing value
// for a required field without a default. It reads every record of the
// entity once.
func checkOrphans(ctx context.Context, tx storage.ReadTx, coll string, next *Schema) error {
	fields := make(map[string]*FieldDef, len(next.Fields))
	var required []string
	for i := range next.Fields {
		f := &next.Fields[i]
		fields[f.Key] = f
		if f.Required && f.Default == nil {
			required = append(required, f.Key)
		}
	}
	return scanAll(ctx, tx, coll, storage.Query{Limit: 1000}, func(rec storage.Record) error {
		var m struct {
			Custom map[string]any `json:"custom"`
		}
		dec := json.NewDecoder(bytes.NewReader(rec.Body))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return fmt.Errorf("%s %s: %w", next.Entity, rec.ID, err)
		}
		for k, v := range m.Custom {
			f, ok := fields[k]
			if !ok {
				return fmt.Errorf("%w: %s %s has a value for %q, which the schema does not define", ErrSchemaInUse, next.Entity, rec.ID, k)
			}
			if v == nil {
				continue
			}
			if _, err := f.check(v); err != nil {
				return fmt.Errorf("%w: %s %s: its value for %q does not fit the new definition: %v", ErrSchemaInUse, next.Entity, rec.ID, k, err)
			}
		}
		for _, k := range required {
			if m.Custom[k] == nil {
				return fmt.Errorf("%w: %q is required but %s %s has no value; give it a default or set the values first", ErrSchemaInUse, k, next.Entity, rec.ID)
			}
		}
		return nil
	})
}

// LoadSchemas reads schemas from YAML or JSON (JSON is YAML): a list of
// schemas, or a single one. Unknown fields are errors; every schema is
// validated. name is used in error messages.
func LoadSchemas(name string, data []byte) ([]Schema, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("crm: %s: %w: %v", name, ErrInvalid, err)
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("crm: %s: %w: no schema", name, ErrInvalid)
	}
	var list []Schema
	var err error
	// Decode a list as a list and a single schema as one, so that errors
	// name the bad key rather than the shape.
	if root.Content[0].Kind == yaml.SequenceNode {
		err = decodeKnown(data, &list)
	} else {
		var one Schema
		err = decodeKnown(data, &one)
		list = []Schema{one}
	}
	if err != nil {
		return nil, fmt.Errorf("crm: %s: %w: %v", name, ErrInvalid, err)
	}
	for i := range list {
		for j := range list[i].Fields {
			list[i].Fields[j].Default = fromYAML(list[i].Fields[j].Default)
		}
		if err := list[i].Validate(); err != nil {
			return nil, fmt.Errorf("crm: %s: schema %d (%s): %w", name, i+1, list[i].Entity, err)
		}
	}
	return list, nil
}

// decodeKnown decodes YAML into v, refusing unknown fields.
func decodeKnown(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// fromYAML converts YAML-decoded defaults to the JSON forms fields take.
func fromYAML(v any) any {
	switch v := v.(type) {
	case int:
		return json.Number(strconv.Itoa(v))
	case int64:
		return json.Number(strconv.FormatInt(v, 10))
	case uint64:
		return json.Number(strconv.FormatUint(v, 10))
	case time.Time: // an unquoted date
		if v.Equal(v.Truncate(24 * time.Hour)) {
			return v.Format(time.DateOnly)
		}
		return v.Format(time.RFC3339)
	case float64:
		return json.Number(strconv.FormatFloat(v, 'g', -1, 64))
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			out[k] = fromYAML(e)
		}
		return out
	case []any:
		for i := range v {
			v[i] = fromYAML(v[i])
		}
		return v
	}
	return v
}
