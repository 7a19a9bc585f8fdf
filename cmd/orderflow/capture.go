package main

import (
	"context"
	"fmt"
	"io"
)

func runCapture(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stderr, "orderflow capture: not implemented yet")
	return errUsage
}
