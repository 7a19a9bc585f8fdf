package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestImportDirection checks the rules against the module's real package graph, every
// package included (cmd, bench and deploy tools too).
func TestImportDirection(t *testing.T) {
	t.Parallel()
	pkgs := listPackages(t)
	if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.ImportPath == module }) {
		t.Fatalf("go list did not list the root package %q", module)
	}
	if !slices.ContainsFunc(pkgs, func(p pkg) bool { return under(p.ImportPath, module+"/webhook") }) {
		t.Logf("no %s/webhook package yet: its rule has nothing to check", module)
	}
	for _, v := range check(pkgs) {
		t.Errorf("wrong import direction, %s", v)
	}
}

// listPackages runs go list -deps -json over the whole module, from its root.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("finding the module: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == "/dev/null" {
		t.Fatal("not inside a Go module")
	}
	cmd := exec.Command("go", "list", "-deps", "-json", "./...")
	cmd.Dir = strings.TrimSuffix(gomod, "/go.mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps -json ./...: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestCheckOnASyntheticGraph(t *testing.T) {
	t.Parallel()
	std := func(path string, imports ...string) pkg {
		return pkg{ImportPath: path, Standard: true, Imports: imports}
	}
	mod := func(path string, imports ...string) pkg { return pkg{ImportPath: path, Imports: imports} }
	clean := []pkg{
		std("context"), std("net/http", "context"), std("encoding/json"),
		mod("github.com/jackc/pgx/v5", "context"),
		mod("github.com/segmentio/kafka-go", "context"),
		mod("github.com/google/uuid"),
		mod("orderflow", "context", "encoding/json", "github.com/google/uuid"),
		mod("orderflow/internal/httpserver", "net/http"),
		mod("orderflow/webhook", "encoding/json"),
		mod("orderflow/postgres", "orderflow", "orderflow/webhook", "github.com/jackc/pgx/v5"),
		mod("orderflow/api", "orderflow", "net/http", "orderflow/internal/httpserver"),
		mod("orderflow/capture", "orderflow", "github.com/segmentio/kafka-go"),
		mod("orderflow/consumers/deliver", "orderflow", "orderflow/webhook", "orderflow/consumers/deliver/internal/queue"),
		mod("orderflow/consumers/deliver/internal/queue", "orderflow"),
		mod("orderflow/consumers/partner", "orderflow", "orderflow/webhook"),
		mod("orderflow/cmd/orderflow", "orderflow/api", "orderflow/capture", "orderflow/consumers/deliver",
			"orderflow/consumers/partner", "orderflow/postgres"),
	}
	// with returns the clean graph with p replacing the package of the same path.
	with := func(changed ...pkg) []pkg {
		out := slices.Clone(clean)
		for _, c := range changed {
			i := slices.IndexFunc(out, func(p pkg) bool { return p.ImportPath == c.ImportPath })
			if i < 0 {
				out = append(out, c)
				continue
			}
			out[i] = c
		}
		return out
	}
	tests := []struct {
		name  string
		graph []pkg
		want  []string
	}{
		{"the clean graph passes", clean, nil},
		{
			"an adapter imports a service",
			with(mod("orderflow/postgres", "orderflow", "orderflow/consumers/deliver")),
			[]string{"an adapter imports no service: orderflow/postgres -> orderflow/consumers/deliver"},
		},
		{
			"an adapter reaches a service through another package",
			with(mod("orderflow/postgres", "orderflow", "orderflow/internal/glue"), mod("orderflow/internal/glue", "orderflow/capture")),
			[]string{"an adapter imports no service: orderflow/postgres -> orderflow/internal/glue -> orderflow/capture"},
		},
		{
			"a service imports a sibling",
			with(mod("orderflow/consumers/partner", "orderflow", "orderflow/consumers/deliver")),
			[]string{"a service imports no sibling service: orderflow/consumers/partner -> orderflow/consumers/deliver"},
		},
		{
			"the api is both an adapter and a service",
			with(mod("orderflow/api", "orderflow", "orderflow/consumers/deliver")),
			[]string{
				"an adapter imports no service: orderflow/api -> orderflow/consumers/deliver",
				"a service imports no sibling service: orderflow/api -> orderflow/consumers/deliver",
			},
		},
		{
			"a service imports a sibling only through an adapter",
			with(mod("orderflow/postgres", "orderflow", "orderflow/consumers/deliver"),
				mod("orderflow/capture", "orderflow", "orderflow/postgres")),
			[]string{
				"an adapter imports no service: orderflow/postgres -> orderflow/consumers/deliver",
				"a service imports no sibling service: orderflow/capture -> orderflow/postgres -> orderflow/consumers/deliver",
			},
		},
		{
			"the root imports a driver",
			with(mod("orderflow", "context", "github.com/jackc/pgx/v5")),
			[]string{"the root domain imports no database, broker or HTTP package: orderflow -> github.com/jackc/pgx/v5"},
		},
		{
			"the root reaches net/http through an internal package",
			with(mod("orderflow", "context", "orderflow/internal/httpserver")),
			[]string{"the root domain imports no database, broker or HTTP package: orderflow -> orderflow/internal/httpserver -> net/http"},
		},
		{
			"the webhook leaf imports the root",
			with(mod("orderflow/webhook", "encoding/json", "orderflow")),
			[]string{"the webhook leaf imports only the standard library: orderflow/webhook -> orderflow"},
		},
		{
			"no webhook package: its rule has nothing to check",
			slices.DeleteFunc(with(mod("orderflow/postgres", "orderflow"), mod("orderflow/consumers/deliver", "orderflow"),
				mod("orderflow/consumers/partner", "orderflow")),
				func(p pkg) bool { return p.ImportPath == "orderflow/webhook" }),
			nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, v := range check(tt.graph) {
				got = append(got, v.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("violations:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}
