package reconcile

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// WriteTable prints the report for people: a summary line per kind, then one row per finding.
func WriteTable(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "reconciled at %s: %d orders scanned", rep.At.Format(time.RFC3339), rep.OrdersScanned)
	if !rep.Deliveries {
		fmt.Fprint(tw, " (no delivery tables: delivery check skipped)")
	}
	fmt.Fprintln(tw)
	for _, k := range Kinds {
		fmt.Fprintf(tw, "  %s\t%d\n", k, rep.Counts[k])
	}
	if len(rep.Drift) == 0 {
		fmt.Fprintln(tw, "no drift")
		return tw.Flush()
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "KIND\tORDER\tSTATUS\tSUMMARY\tSINCE\tDETAIL\tREPAIR")
	for _, d := range rep.Drift {
		status, summary := "-", "-"
		if d.Status != "" {
			status = fmt.Sprintf("%s v%d", d.Status, d.Version)
		}
		if d.SummaryStatus != "" {
			summary = fmt.Sprintf("%s v%d", d.SummaryStatus, d.SummaryVersion)
		}
		detail := d.Detail
		if d.EventID != "" {
			detail += " (event " + d.EventID + ", endpoint " + d.EndpointID + ")"
		}
		repair := "-"
		if d.Repair != "" {
			repair = d.Repair
			if d.RepairEventID != "" {
				repair += " " + d.RepairEventID
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Kind, d.OrderID, status, summary,
			d.Since.Format(time.RFC3339), detail, repair)
	}
	if rep.Truncated {
		fmt.Fprintf(tw, "... more drift than listed; the counts above are complete\n")
	}
	return tw.Flush()
}

// WriteJSON prints the report for machines, one JSON object.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// ProgressPrinter returns a Progress function that writes "scanned n/total" lines to w.
func ProgressPrinter(w io.Writer) func(scanned, total int64) {
	return func(scanned, total int64) {
		fmt.Fprintf(w, "reconcile: scanned %s/%s orders (%d%%)\n",
			strconv.FormatInt(scanned, 10), strconv.FormatInt(total, 10), 100*scanned/max(total, 1))
	}
}
