package partner

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"orderflow/internal/testenv"
	"orderflow/webhook"
)

// A grouped receipt statement that PostgreSQL refuses for one webhook's values is rewritten
// webhook by webhook (writeReceipts): the others in the group are stored with their callbacks
// and answered as stored, and only the bad one carries the refusal, with nothing of it
// written. Without the fallback one malformed webhook would fail every webhook that happened
// to arrive with it. (The hook's own text checks keep such values out over HTTP, so the bad
// row is built here directly: invalid UTF-8 in its webhook-id, 22021 on the insert.)
func TestARefusedReceiptBatchStoresItsGoodWebhooksOneByOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := testenv.NewDatabase(t)
	secret, err := webhook.NewSecret()
	testenv.Must(t, err, "making a secret")
	p, err := New(ctx, Config{DatabaseURL: dsn, Secrets: []string{secret}, APIURL: "http://127.0.0.1:9/unused"})
	testenv.Must(t, err, "creating the partner")
	t.Cleanup(p.Close)

	row := func(id string) *receiptReq {
		order, action := uuid.NewString(), "fulfill"
		v := int32(1)
		return &receiptReq{r: receiptRow{id: id, eventType: "order.created", subject: order, version: &v,
			orderID: &order, action: &action}}
	}
	good1, bad, good2 := row(uuid.NewString()), row("bad-\xff\xfe-id"), row(uuid.NewString())
	p.writeReceipts(ctx, []*receiptReq{good1, bad, good2})

	for _, g := range []*receiptReq{good1, good2} {
		if g.err != nil {
			t.Errorf("good webhook %s failed with its bad neighbour: %v", g.r.id, g.err)
		}
		if g.ans.Duplicate || g.ans.Action != "fulfill" {
			t.Errorf("good webhook %s answered %+v, want a new receipt with action fulfill", g.r.id, g.ans)
		}
	}
	if bad.err == nil || !refused(bad.err) {
		t.Errorf("bad webhook: err %v, want PostgreSQL's refusal of its values", bad.err)
	}
	sql := testenv.Connect(t, dsn)
	var receipts, callbacks int
	err = sql.QueryRow(ctx, `SELECT (SELECT count(*) FROM partner.receipts), (SELECT count(*) FROM partner.callbacks
		WHERE webhook_id = ANY($1))`, []string{good1.r.id, good2.r.id}).Scan(&receipts, &callbacks)
	testenv.Must(t, err, "counting receipts")
	if receipts != 2 || callbacks != 2 {
		t.Errorf("%d receipts and %d callbacks stored, want the two good webhooks' (2 and 2)", receipts, callbacks)
	}
}
