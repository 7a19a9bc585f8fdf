package main

import (
	"context"
	"fmt"
	"io"
)

func runReconcile(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stderr, "orderflow reconcile: not implemented yet")
	return errUsage
}
