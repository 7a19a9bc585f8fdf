package main

import (
	"context"
	"fmt"
	"io"
)

func runProject(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stderr, "orderflow project: not implemented yet")
	return errUsage
}
