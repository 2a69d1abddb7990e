package crm_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
)

func TestAccounts(t *testing.T) {
	env := setup(t)
	ctx := context.Background()
	accounts := env.engine.Accounts()

	a, err := accounts.Create(ctx, crm.Account{Name: " Acme Corp ", Domain: "https://www.ACME.com/", Type: crm.B2B, Employees: 120, Industry: "Manufacturing"})
	require.NoError(t, err)
	assert.Equal(t, "Acme Corp", a.Name)
	assert.Equal(t, "acme.com", a.Domain)

	_, err = accounts.Create(ctx, crm.Account{Name: "Acme again", Domain: "acme.com"})
	require.ErrorIs(t, err, crm.ErrExists, "domain is unique")

	for name, bad := range map[string]crm.Account{
		"no name":                              {Domain: "x.io"},
		"bad domain":                           {Name: "X", Domain: "not a domain"},
		"bad type":                             {Name: "X", Type: "b2x"},
		"negative staff":                       {Name: "X", Employees: -1},
		"name of 200 characters but 600 bytes": {Name: strings.Repeat("漢", 200)},
	} {
		_, err := accounts.Create(ctx, bad)
		var ve *crm.ValidationError
		assert.ErrorAs(t, err, &ve, name)
	}

	c, err := env.engine.Contacts().Create(ctx, crm.Contact{FirstName: "Wile", AccountID: a.ID})
	require.NoError(t, err)
	p, err := env.engine.Contacts().List(ctx, crm.ListOptions{By: "account", Value: a.ID})
	require.NoError(t, err)
	require.Len(t, p.Items, 1)

	// An account with contacts cannot be deleted.
	err = accounts.Delete(ctx, a.ID)
	require.ErrorIs(t, err, crm.ErrInUse)
	assert.Contains(t, err.Error(), c.ID)
	_, err = accounts.Get(ctx, a.ID)
	require.NoError(t, err)

	c.AccountID = ""
	_, err = env.engine.Contacts().Update(ctx, c)
	require.NoError(t, err)
	require.NoError(t, accounts.Delete(ctx, a.ID))

	byName, err := accounts.List(ctx, crm.ListOptions{By: "industry", Value: "Manufacturing"})
	require.NoError(t, err)
	assert.Empty(t, byName.Items)
}
