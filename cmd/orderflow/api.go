package main

import (
	"context"
	"fmt"
	"io"
)

func runAPI(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stderr, "orderflow api: being built")
	return errUsage
}
