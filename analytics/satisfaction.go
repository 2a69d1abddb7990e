package analytics

import (
	"context"
	"fmt"

	"github.com/rapportcrm/rapport/crm"
)

// Dimensions of the satisfaction report.
const (
	// ByMonth groups survey responses by the month (YYYY-MM, in the
	// engine's time zone) they were answered in.
	ByMonth By = "month"
	// BySurvey groups them by survey.
	BySurvey By = "survey"
	// BySegment groups them by the customer's segment, given in
	// SatisfactionQuery.Segments.
	BySegment By = "segment"
)

// SatisfactionQuery selects the survey responses of a satisfaction
// report.
type SatisfactionQuery struct {
	// Period selects responses by when they were answered.
	Period Period
	// Survey keeps one survey's responses; "" keeps all.
	Survey string
	// By is All, ByMonth, BySurvey or BySegment.
	By By
	// Segments maps contact IDs to segment names for BySegment (for
	// example RFM.Segments()); responses of other contacts, or without a
	// contact, fall in the segment "".
	Segments map[string]string
	// Slice keeps the responses of some customers, as for
	// RFMOptions.Slice; responses without a contact are then left out.
	Slice Slice
}

// Satisfaction reports NPS, CSI and CDI from survey responses.
type Satisfaction struct {
	Period Period
	Survey string
	By     By
	// Groups are in key order; with By All there is one, with the key "".
	Groups []SatisfactionGroup
}

// SatisfactionGroup is the satisfaction of one group of responses.
type SatisfactionGroup struct {
	Key       string
	Responses int
	// Promoters answered the NPS question 9 or 10, Passives 7 or 8,
	// Detractors 0 to 6; NPSAnswers is their sum.
	NPSAnswers, Promoters, Passives, Detractors int
	// NPS is (Promoters − Detractors) / NPSAnswers × 100, from −100 to
	// 100 (0 without answers).
	NPS float64
	// Items counts the scored items answered.
	Items int
	// CSI, the satisfaction index, is Σ importance × score / Σ importance
	// × 10 × 100 over the items: 100 when every item scored 10.
	CSI float64
	// CDI, the dissatisfaction index, is the importance-weighted share of
	// items scored 0 to 6 (the detractor range), × 100: Σ importance ×
	// [score ≤ 6] / Σ importance × 100.
	CDI float64
}

// Satisfaction computes NPS, CSI and CDI over the responses answered in
// the period.
func (r *Reports) Satisfaction(ctx context.Context, q SatisfactionQuery) (*Satisfaction, error) {
	if err := q.Period.validate(); err != nil {
		return nil, err
	}
	switch q.By {
	case All, ByMonth, BySurvey, BySegment:
	default:
		return nil, fmt.Errorf("%w: cannot group survey responses by %q (use %q, %q or %q)", ErrInvalid, q.By, ByMonth, BySurvey, BySegment)
	}
	if q.By == BySegment && q.Segments == nil {
		return nil, fmt.Errorf("%w: grouping by segment needs SatisfactionQuery.Segments", ErrInvalid)
	}
	keep, err := r.customers(ctx, q.Slice, "satisfaction")
	if err != nil {
		return nil, err
	}
	type acc struct {
		g                    SatisfactionGroup
		weight, score, unhap int64
	}
	groups := map[string]*acc{}
	loc := r.t.Location()
	err = r.t.SurveyResponses().Each(ctx, periodScan("answered_at", q.Period), func(s *crm.SurveyResponse) error {
		if (q.Survey != "" && s.Survey != q.Survey) || (keep != nil && !keep[s.ContactID]) {
			return nil
		}
		key := ""
		switch q.By {
		case ByMonth:
			key = s.AnsweredAt.In(loc).Format("2006-01")
		case BySurvey:
			key = s.Survey
		case BySegment:
			key = q.Segments[s.ContactID]
		}
		a := group(groups, key)
		a.g.Responses++
		if s.NPS != nil {
			a.g.NPSAnswers++
			switch n := *s.NPS; {
			case n >= 9:
				a.g.Promoters++
			case n >= 7:
				a.g.Passives++
			default:
				a.g.Detractors++
			}
		}
		for _, it := range s.Items {
			w := int64(max(it.Importance, 1))
			a.g.Items++
			a.weight += w
			a.score += w * int64(it.Score)
			if it.Score <= 6 {
				a.unhap += w
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := &Satisfaction{Period: q.Period, Survey: q.Survey, By: q.By}
	for _, k := range sortedKeys(groups) {
		a := groups[k]
		g := a.g
		g.Key = k
		if g.NPSAnswers > 0 {
			g.NPS = float64(g.Promoters-g.Detractors) * 100 / float64(g.NPSAnswers)
		}
		if a.weight > 0 {
			g.CSI = float64(a.score) * 10 / float64(a.weight)
			g.CDI = float64(a.unhap) * 100 / float64(a.weight)
		}
		out.Groups = append(out.Groups, g)
	}
	return out, nil
}

// Segments returns each customer's segment, for SatisfactionQuery.Segments.
func (r *RFM) Segments() map[string]string {
	out := make(map[string]string, len(r.Rows))
	for _, row := range r.Rows {
		out[row.CustomerID] = row.Segment
	}
	return out
}
