package archtest

import (
	"fmt"
	"slices"
	"strings"
)

const module = "orderflow"

// pkg is what the rules need of one package listed by go list -deps -json.
type pkg struct {
	ImportPath string
	Standard   bool
	Imports    []string
}

// violation is a forbidden dependency and the import path that leads to it: path[0] is the
// constrained package, the last element the forbidden one, each step a direct import.
type violation struct {
	rule string
	path []string
}

func (v violation) String() string {
	return fmt.Sprintf("%s: %s", v.rule, strings.Join(v.path, " -> "))
}

// rule constrains the packages it applies to: none of them may depend, directly or through
// other packages, on a package it forbids.
type rule struct {
	name    string
	applies func(p string) bool
	forbids func(from string, dep pkg) bool
}

// under reports whether p is prefix or a package below it.
func under(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

func underAny(p string, prefixes ...string) bool {
	return slices.ContainsFunc(prefixes, func(prefix string) bool { return under(p, prefix) })
}

// service names the service p belongs to: capture, api and each consumers/<name> are sibling
// services; "" for anything else.
func service(p string) string {
	switch {
	case underAny(p, module+"/capture", module+"/api"):
		return strings.Join(strings.Split(p, "/")[:2], "/")
	case strings.HasPrefix(p, module+"/consumers/"):
		return strings.Join(strings.Split(p, "/")[:3], "/")
	}
	return ""
}

// infrastructure lists the database, broker and HTTP packages the root domain must not see.
var infrastructure = []string{
	"database/sql", "github.com/jackc", "github.com/lib/pq",
	"github.com/segmentio/kafka-go", "github.com/twmb/franz-go", "github.com/IBM/sarama", "github.com/Shopify/sarama",
	"github.com/confluentinc",
	"net/http", "github.com/gorilla", "github.com/prometheus",
}

var rules = []rule{
	{
		name:    "an adapter imports no service",
		applies: func(p string) bool { return underAny(p, module+"/postgres", module+"/api") },
		forbids: func(_ string, dep pkg) bool {
			return underAny(dep.ImportPath, module+"/consumers", module+"/capture")
		},
	},
	{
		name:    "a service imports no sibling service",
		applies: func(p string) bool { return service(p) != "" },
		forbids: func(from string, dep pkg) bool {
			s := service(dep.ImportPath)
			return s != "" && s != service(from)
		},
	},
	{
		name:    "the root domain imports no database, broker or HTTP package",
		applies: func(p string) bool { return p == module },
		forbids: func(_ string, dep pkg) bool { return underAny(dep.ImportPath, infrastructure...) },
	},
	{
		// The rule applies only once the package exists: nothing matches until then.
		name:    "the webhook leaf imports only the standard library",
		applies: func(p string) bool { return under(p, module+"/webhook") },
		forbids: func(_ string, dep pkg) bool { return !dep.Standard },
	},
}

// check applies every rule to every package of pkgs and returns the violations, each with the
// shortest import path to the forbidden package. The search does not go on through a forbidden
// package, so each report names the first wrong edge rather than everything behind it.
func check(pkgs []pkg) []violation {
	byPath := make(map[string]pkg, len(pkgs))
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	lookup := func(path string) pkg {
		if p, ok := byPath[path]; ok {
			return p
		}
		// "C" (cgo) is the only import go list does not list as a package of its own.
		return pkg{ImportPath: path, Standard: path == "C"}
	}
	var out []violation
	for _, r := range rules {
		for _, p := range pkgs {
			if !r.applies(p.ImportPath) {
				continue
			}
			// Breadth-first, so the path reported is a shortest one.
			parent := map[string]string{p.ImportPath: ""}
			queue := []string{p.ImportPath}
			for len(queue) > 0 {
				cur := queue[0]
				queue = queue[1:]
				for _, imp := range lookup(cur).Imports {
					if _, seen := parent[imp]; seen {
						continue
					}
					parent[imp] = cur
					if r.forbids(p.ImportPath, lookup(imp)) {
						out = append(out, violation{rule: r.name, path: pathTo(parent, imp)})
						continue
					}
					queue = append(queue, imp)
				}
			}
		}
	}
	return out
}

func pathTo(parent map[string]string, p string) []string {
	var path []string
	for ; p != ""; p = parent[p] {
		path = append(path, p)
	}
	slices.Reverse(path)
	return path
}
