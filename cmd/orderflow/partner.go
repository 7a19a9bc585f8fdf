package main

import (
	"context"
	"fmt"
	"io"
)

func runPartner(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stderr, "orderflow partner: not implemented yet")
	return errUsage
}
