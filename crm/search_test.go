package crm_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage"
)

func TestSearch(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	contacts := env.engine.Contacts()
	mk := func(c crm.Contact) crm.Contact {
		got, err := contacts.Create(ctx, c)
		require.NoError(t, err)
		return got
	}
	zoe := mk(crm.Contact{FirstName: "Zoë", LastName: "Núñez", Email: "zoe.nunez@example.com", Phone: "+34 912 345 678"})
	zack := mk(crm.Contact{FirstName: "Zack", LastName: "Nuland", Email: "zack@example.org"})
	mk(crm.Contact{FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com"})

	search := func(q string) []string {
		t.Helper()
		pg, err := contacts.Search(ctx, q, crm.SearchOptions{})
		require.NoError(t, err, q)
		var ids []string
		for _, c := range pg.Items {
			ids = append(ids, c.ID)
		}
		return ids
	}
	assert.Equal(t, []string{zoe.ID}, search("zoe"), "accents ignored")
	assert.Equal(t, []string{zoe.ID}, search("NÚÑ"), "case and accents ignored, prefix")
	assert.ElementsMatch(t, []string{zoe.ID, zack.ID}, search("z n"), "every word a prefix")
	assert.Equal(t, []string{zack.ID}, search("za nul"))
	assert.Equal(t, []string{zoe.ID}, search("zoe.nunez@example.com"))
	assert.Equal(t, []string{zoe.ID}, search("+34 912"), "phone digits")
	assert.Empty(t, search("zoe lovelace"))
	assert.Empty(t, search("nobody"))

	// Paging: one record per page, no record twice.
	seen := map[string]bool{}
	opts := crm.SearchOptions{Limit: 1}
	for {
		pg, err := contacts.Search(ctx, "example", opts)
		require.NoError(t, err)
		require.LessOrEqual(t, len(pg.Items), 1)
		for _, c := range pg.Items {
			assert.False(t, seen[c.ID])
			seen[c.ID] = true
		}
		if pg.Next == "" {
			break
		}
		opts.Cursor = pg.Next
	}
	assert.Len(t, seen, 3)

	// Updates re-index; accounts and leads search too.
	zoe.LastName, zoe.Email = "Ortiz", "zoe@example.com"
	_, err := contacts.Update(ctx, zoe)
	require.NoError(t, err)
	assert.Empty(t, search("nunez"))
	assert.Equal(t, []string{zoe.ID}, search("ortiz"))
	a, err := env.engine.Accounts().Create(ctx, crm.Account{Name: "Société Générale", Domain: "societegenerale.example"})
	require.NoError(t, err)
	pg, err := env.engine.Accounts().Search(ctx, "societe gen", crm.SearchOptions{})
	require.NoError(t, err)
	require.Len(t, pg.Items, 1)
	assert.Equal(t, a.ID, pg.Items[0].ID)
	l, err := env.engine.Leads().Create(ctx, crm.Lead{Company: "Müller GmbH"})
	require.NoError(t, err)
	lp, err := env.engine.Leads().Search(ctx, "muller", crm.SearchOptions{})
	require.NoError(t, err)
	require.Len(t, lp.Items, 1)
	assert.Equal(t, l.ID, lp.Items[0].ID)

	_, err = contacts.Search(ctx, "  ,;  ", crm.SearchOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid)
	_, err = env.engine.Orders().Search(ctx, "x", crm.SearchOptions{})
	require.ErrorIs(t, err, crm.ErrInvalid)
}

// TestSearchIndexRobustness: a record with the longest ID is indexed like
// any other, and Search answers while writes keep coming.
func TestSearchIndexRobustness(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	longID := strings.Repeat("x", storage.MaxIDLen)
	_, err := env.engine.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{ID: longID}, FirstName: "Longfellow"})
	require.NoError(t, err)
	pg, err := env.engine.Contacts().Search(ctx, "longf", crm.SearchOptions{})
	require.NoError(t, err)
	require.Len(t, pg.Items, 1)
	assert.Equal(t, longID, pg.Items[0].ID)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				batch := make([]crm.Contact, 50)
				for j := range batch {
					batch[j] = crm.Contact{FirstName: fmt.Sprintf("Writer%d-%d-%d", w, i, j)}
				}
				if _, err := env.engine.Contacts().CreateMany(ctx, batch); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 5 {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := env.engine.Contacts().Search(sctx, "longfellow", crm.SearchOptions{})
		cancel()
		require.NoError(t, err, "search must not wait for writes that began after it")
	}
	close(stop)
	wg.Wait()
}
