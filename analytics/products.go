package analytics

import (
	"cmp"
	"context"
	"slices"

	"github.com/rapportcrm/rapport/crm"
)

// ProductsQuery selects the orders of a product report.
type ProductsQuery struct {
	// Period selects orders (and refunds) by when they were placed.
	Period Period
	// Category keeps the lines of one product category ("" keeps all).
	Category string
	// Slice keeps the orders of some owners, of a campaign and of
	// accounts of an industry, and the lines of one product; it takes no
	// Source.
	Slice Slice
	// Currency is as for LostQuery; orders in other currencies are left
	// out.
	Currency string
}

// Products ranks products by their actual sales.
type Products struct {
	Period   Period
	Currency string
	// Products are by Rank.
	Products []ProductRow
	// Revenue sums the products' revenue.
	Revenue int64
}

// ProductRow is one product's sales, from order lines (delivery lines
// are not products and are left out).
type ProductRow struct {
	// SKU identifies the product; Name and Category come from its first
	// line in the period.
	SKU, Name, Category string
	// Orders counts the orders (not refunds) with a line of it; Customers
	// the distinct customers of those orders.
	Orders, Customers int
	// Quantity is the net quantity sold (refunds subtract); Revenue the
	// net amount, in minor units.
	Quantity, Revenue int64
	// Share is Revenue / Products.Revenue.
	Share float64
	// Rank is the product's place by Revenue, then Quantity, then Orders
	// (1 is the best seller); equal products share a rank.
	Rank int
}

// Products computes the product popularity report, decoding each order
// of the period.
func (r *Reports) Products(ctx context.Context, q ProductsQuery) (*Products, error) {
	if err := q.Period.validate(); err != nil {
		return nil, err
	}
	pick, err := newCurrencyPick(q.Currency, "ProductsQuery.Currency")
	if err != nil {
		return nil, err
	}
	sl, err := r.slicer(ctx, q.Slice, "products", dimOwner|dimIndustry|dimCampaign|dimProduct)
	if err != nil {
		return nil, err
	}
	type acc struct {
		row       ProductRow
		customers map[string]bool
	}
	prods := map[string]*acc{}
	out := &Products{Period: q.Period}
	err = r.t.Orders().Each(ctx, periodScan("ordered_at", q.Period), func(o *crm.Order) error {
		if !sl.order(o) {
			return nil
		}
		if ok, err := pick.keep(o.Total); err != nil || !ok {
			return err
		}
		counted := map[string]bool{}
		for _, l := range o.Lines {
			if l.Delivery || (q.Category != "" && l.Category != q.Category) || !sl.line(&l) {
				continue
			}
			sku := cmp.Or(l.SKU, l.ProductID)
			a := prods[sku]
			if a == nil {
				a = &acc{row: ProductRow{SKU: sku, Name: l.Description, Category: l.Category}, customers: map[string]bool{}}
				prods[sku] = a
			}
			amount, err := l.Amount()
			if err != nil {
				return err
			}
			if err := addMoney(&a.row.Revenue, amount.Amount, "product revenue"); err != nil {
				return err
			}
			if err := addMoney(&out.Revenue, amount.Amount, "product revenue"); err != nil {
				return err
			}
			a.row.Quantity += l.Quantity
			if !o.Refund && !counted[sku] {
				counted[sku] = true
				a.row.Orders++
				if o.ContactID != "" && !a.customers[o.ContactID] {
					a.customers[o.ContactID] = true
					a.row.Customers++
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.Currency = pick.currency
	for _, a := range prods {
		out.Products = append(out.Products, a.row)
	}
	better := func(a, b ProductRow) int {
		return cmp.Or(cmp.Compare(b.Revenue, a.Revenue), cmp.Compare(b.Quantity, a.Quantity), cmp.Compare(b.Orders, a.Orders))
	}
	slices.SortFunc(out.Products, func(a, b ProductRow) int { return cmp.Or(better(a, b), cmp.Compare(a.SKU, b.SKU)) })
	for i := range out.Products {
		p := &out.Products[i]
		p.Rank = i + 1
		if i > 0 && better(out.Products[i-1], *p) == 0 {
			p.Rank = out.Products[i-1].Rank
		}
		if out.Revenue != 0 {
			p.Share = float64(p.Revenue) / float64(out.Revenue)
		}
	}
	return out, nil
}
