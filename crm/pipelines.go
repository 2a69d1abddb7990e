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
	"sync"
	"time"

	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/storage"
)

// Pipelines stores a tenant's pipeline definitions. A lead, deal, case or
// account names its pipeline by Definition.Name; the definition's Kind
// says which records may use it.
//
// Events: pipeline.saved, pipeline.deleted.
type Pipelines struct{ t *Tenant }

const pipelinesCollection = "pipelines"

var pipelineCollection = storage.Collection{Name: pipelinesCollection}

// Pipelines returns the tenant's pipeline definitions.
func (t *Tenant) Pipelines() *Pipelines { return &Pipelines{t: t} }

// Pipelines returns the default tenant's pipeline definitions.
func (e *Engine) Pipelines() *Pipelines { return e.Default().Pipelines() }

// SaveOptions configure Pipelines.SaveWith.
type SaveOptions struct {
	// StageMap maps each removed stage that records still occupy to the
	// stage of the new definition they move to. Each migrated record gets
	// a history entry with the reason "pipeline changed" and a
	// "<kind>.stage_changed" event, in the same transaction as the new
	// definition. Migration is an administrative change: it does not check
	// transitions, guards or required fields.
	StageMap map[string]string
	// Actor is recorded on the migrated deals' history entries.
	Actor pipeline.Actor
}

// Save stores def, replacing a definition of the same name. The definition
// must compile. A change that removes a stage some records are in is
// refused with ErrInUse; use SaveWith and a StageMap to migrate them. The
// kind of a pipeline in use cannot change.
func (p *Pipelines) Save(ctx context.Context, def *pipeline.Definition) error {
	return p.SaveWith(ctx, def, SaveOptions{})
}

// SaveWith is Save with options.
func (p *Pipelines) SaveWith(ctx context.Context, def *pipeline.Definition, opts SaveOptions) error {
	compiled, err := def.Compile(pipeline.CompileOptions{Clock: p.t.e.clock.Now})
	if err != nil {
		return fmt.Errorf("crm: save pipeline: %w", err)
	}
	for from, to := range opts.StageMap {
		if _, ok := compiled.Stage(to); !ok {
			return fmt.Errorf("crm: save pipeline %s: %w: stage map sends %s to %q, which the new definition does not have", def.Name, ErrInvalid, from, to)
		}
	}
	if err := storage.ValidateID("pipeline name", def.Name); err != nil {
		return fmt.Errorf("crm: save pipeline: %w", err)
	}
	if strings.Contains(def.Name, "@") || len(def.Name) > storage.MaxIDLen-21 {
		return fmt.Errorf("crm: save pipeline %q: %w: a pipeline name has no '@' and at most %d bytes", def.Name, ErrInvalid, storage.MaxIDLen-21)
	}
	body, err := json.Marshal(def)
	if err != nil {
		return fmt.Errorf("crm: save pipeline %s: %w", def.Name, err)
	}
	now := p.t.e.clock.Now().UTC()
	return p.t.update(ctx, func(tx storage.Tx) error {
		var version uint64
		var prev *pipeline.Definition
		old, err := tx.Get(ctx, pipelinesCollection, def.Name)
		switch {
		case err == nil:
			version = old.Version
			prev = new(pipeline.Definition)
			if err := json.Unmarshal(old.Body, prev); err != nil {
				return err
			}
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		if _, err := tx.Put(ctx, pipelinesCollection, storage.Record{ID: def.Name, Version: version, Body: body}); err != nil {
			return err
		}
		// Keep the version, so that history entries can name the
		// definition they were made under; then migrate the records.
		n, err := latestVersion(ctx, tx, def.Name)
		if err != nil {
			return err
		}
		saved, err := json.Marshal(PipelineVersion{Name: def.Name, Version: n + 1, SavedAt: now, Actor: opts.Actor.ID, Definition: *def})
		if err != nil {
			return err
		}
		if _, err := tx.Put(ctx, versionsCollection, storage.Record{ID: versionID(def.Name, n+1), Body: saved}); err != nil {
			return err
		}
		if prev != nil {
			if err := p.migrate(ctx, tx, prev, compiled, opts); err != nil {
				return err
			}
		}
		return tx.Append(ctx, storage.Event{Type: "pipeline.saved", Collection: pipelinesCollection, RecordID: def.Name, Time: now})
	})
}

// PipelineVersion is one saved version of a pipeline definition. Every
// Save stores one; versions of a name count up from 1 and are kept when
// the pipeline is deleted, because stage history refers to them
// (StageChange.PipelineVersion).
type PipelineVersion struct {
	Name    string    `json:"name"`
	Version uint64    `json:"version"`
	SavedAt time.Time `json:"saved_at"`
	// Actor is SaveOptions.Actor.
	Actor      string              `json:"actor,omitempty"`
	Definition pipeline.Definition `json:"definition"`
}

const versionsCollection = "pipeline_versions"

var versionCollection = storage.Collection{Name: versionsCollection}

// versionID is name@version, zero-padded so that IDs sort by version.
func versionID(name string, v uint64) string { return fmt.Sprintf("%s@%020d", name, v) }

// latestVersion returns the highest saved version of a pipeline, 0 if
// none.
func latestVersion(ctx context.Context, tx storage.ReadTx, name string) (uint64, error) {
	pg, err := tx.Scan(ctx, versionsCollection, storage.Query{Prefix: name + "@", Reverse: true, Limit: 1})
	if err != nil || len(pg.Records) == 0 {
		return 0, err
	}
	_, num, _ := strings.Cut(strings.TrimPrefix(pg.Records[0].ID, name), "@")
	return strconv.ParseUint(num, 10, 64)
}

// Versions returns the saved versions of a pipeline, oldest first.
func (p *Pipelines) Versions(ctx context.Context, name string) ([]PipelineVersion, error) {
	var out []PipelineVersion
	err := p.t.view(ctx, func(tx storage.ReadTx) error {
		return scanAll(ctx, tx, versionsCollection, storage.Query{Prefix: name + "@"}, func(rec storage.Record) error {
			var v PipelineVersion
			if err := json.Unmarshal(rec.Body, &v); err != nil {
				return fmt.Errorf("pipeline version %s: %w", rec.ID, err)
			}
			out = append(out, v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("crm: pipeline %s: %w", name, err)
	}
	return out, nil
}

// migrate moves the records out of the stages of prev that the new
// definition drops, as opts.StageMap says, or refuses with ErrInUse.
func (p *Pipelines) migrate(ctx context.Context, tx storage.Tx, prev *pipeline.Definition, next *pipeline.Pipeline, opts SaveOptions) error {
	k, err := stagedKindOf(prev.Kind)
	if err != nil {
		return err
	}
	if prev.Kind != next.Kind() {
		if rec, used, err := pipelineUser(ctx, tx, k, prev); err != nil || used {
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: pipeline %s is for %ss and %s %s uses it; it cannot become a pipeline for %ss",
				ErrInUse, prev.Name, prev.Kind, prev.Kind, rec, next.Kind())
		}
		return nil
	}
	holidaysChanged := !slices.Equal(prev.Holidays, next.Holidays())
	for _, s := range prev.Stages {
		if ns, kept := next.Stage(s.Key); kept {
			if timingChanged(s, ns, holidaysChanged) {
				if err := redueStage(ctx, tx, p.t, k, next, s.Key); err != nil {
					return err
				}
			}
			continue
		}
		for {
			pg, err := tx.Scan(ctx, k.collectionName(), storage.Query{Index: "stage", Equal: prev.Name + "/" + s.Key, Limit: 1000})
			if err != nil {
				return err
			}
			if len(pg.Records) == 0 {
				break
			}
			to, mapped := opts.StageMap[s.Key]
			if !mapped {
				return fmt.Errorf("%w: pipeline %s: stage %s still holds %ss (for example %s); map it to a stage of the new definition or move them first",
					ErrInUse, prev.Name, s.Key, prev.Kind, pg.Records[0].ID)
			}
			for _, rec := range pg.Records {
				if err := k.relocateRecord(ctx, tx, p.t, rec, next, to, MoveOptions{Reason: "pipeline changed", Actor: opts.Actor}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// timingChanged reports whether a stage's due times may differ under its
// new definition.
func timingChanged(old, new pipeline.Stage, holidaysChanged bool) bool {
	return old.Norm != new.Norm || old.SLA != new.SLA || old.Terminal != new.Terminal ||
		(holidaysChanged && (old.Norm.BusinessDays > 0 || new.Norm.BusinessDays > 0 || new.SLA != ""))
}

// pipelineUser returns a record of kind k in one of def's stages, if any.
func pipelineUser(ctx context.Context, tx storage.ReadTx, k stagedKind, def *pipeline.Definition) (string, bool, error) {
	for _, s := range def.Stages {
		pg, err := tx.Scan(ctx, k.collectionName(), storage.Query{Index: "stage", Equal: def.Name + "/" + s.Key, Limit: 1})
		if err != nil {
			return "", false, err
		}
		if len(pg.Records) > 0 {
			return pg.Records[0].ID, true, nil
		}
	}
	return "", false, nil
}

// Get returns the stored definition.
func (p *Pipelines) Get(ctx context.Context, name string) (*pipeline.Definition, error) {
	var def pipeline.Definition
	err := p.t.view(ctx, func(tx storage.ReadTx) error {
		rec, err := tx.Get(ctx, pipelinesCollection, name)
		if err != nil {
			return err
		}
		return json.Unmarshal(rec.Body, &def)
	})
	if err != nil {
		return nil, fmt.Errorf("crm: pipeline %s: %w", name, err)
	}
	return &def, nil
}

// List returns the stored definitions of the given kind ("" for every
// kind), by name.
func (p *Pipelines) List(ctx context.Context, kind pipeline.Kind) ([]*pipeline.Definition, error) {
	var defs []*pipeline.Definition
	err := p.t.view(ctx, func(tx storage.ReadTx) error {
		return scanAll(ctx, tx, pipelinesCollection, storage.Query{}, func(rec storage.Record) error {
			var def pipeline.Definition
			if err := json.Unmarshal(rec.Body, &def); err != nil {
				return fmt.Errorf("pipeline %s: %w", rec.ID, err)
			}
			if kind == "" || def.Kind == kind {
				defs = append(defs, &def)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("crm: pipelines: %w", err)
	}
	return defs, nil
}

// Delete removes a definition no record uses (ErrInUse otherwise).
func (p *Pipelines) Delete(ctx context.Context, name string) error {
	return p.t.update(ctx, func(tx storage.Tx) error {
		rec, err := tx.Get(ctx, pipelinesCollection, name)
		if err != nil {
			return err
		}
		var def pipeline.Definition
		if err := json.Unmarshal(rec.Body, &def); err != nil {
			return err
		}
		k, err := stagedKindOf(def.Kind)
		if err != nil {
			return err
		}
		if id, used, err := pipelineUser(ctx, tx, k, &def); err != nil || used {
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: pipeline %s is used by %s %s", ErrInUse, name, def.Kind, id)
		}
		if err := tx.Delete(ctx, pipelinesCollection, name, 0); err != nil {
			return err
		}
		return tx.Append(ctx, storage.Event{Type: "pipeline.deleted", Collection: pipelinesCollection, RecordID: name, Time: p.t.e.clock.Now().UTC()})
	})
}

// compiled returns the compiled pipeline stored under name, reading it in
// tx. Compilations are cached per tenant and name and reused while the
// stored definition is byte for byte the same, so a pipeline that is
// deleted and saved again, or changed by another engine on the same store,
// is compiled afresh; the cache holds one compilation per pipeline.
func (t *Tenant) compiled(ctx context.Context, tx storage.ReadTx, name string) (*pipeline.Pipeline, error) {
	rec, err := tx.Get(ctx, pipelinesCollection, name)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", name, err)
	}
	key := pipelineKey{tenant: t.id, name: name}
	if c, ok := t.e.pipelines.Load(key); ok {
		if c := c.(*compiledPipeline); bytes.Equal(c.body, rec.Body) {
			return c.p, nil
		}
	}
	var def pipeline.Definition
	if err := json.Unmarshal(rec.Body, &def); err != nil {
		return nil, fmt.Errorf("pipeline %q: %w", name, err)
	}
	p, err := def.Compile(pipeline.CompileOptions{Clock: t.e.clock.Now})
	if err != nil {
		return nil, err
	}
	t.e.pipelines.Store(key, &compiledPipeline{body: bytes.Clone(rec.Body), p: p})
	return p, nil
}

type pipelineKey struct{ tenant, name string }

type compiledPipeline struct {
	body []byte
	p    *pipeline.Pipeline
}

// pipelineCache maps pipelineKey to *compiledPipeline.
type pipelineCache = sync.Map

func (t *Tenant) view(ctx context.Context, fn func(storage.ReadTx) error) error {
	if err := t.e.enter(); err != nil {
		return err
	}
	defer t.e.leave()
	return t.e.store.View(ctx, t.id, fn)
}

func (t *Tenant) update(ctx context.Context, fn func(storage.Tx) error) error {
	if err := t.e.enter(); err != nil {
		return err
	}
	defer t.e.leave()
	return t.e.store.Update(ctx, t.id, fn)
}
