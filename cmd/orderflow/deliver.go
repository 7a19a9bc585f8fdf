package main

import (
	"context"
	"fmt"
	"io"
)

func runDeliver(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stderr, "orderflow deliver: not implemented yet")
	return errUsage
}
