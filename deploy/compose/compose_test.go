// Package compose checks docker-compose.yml and the Dockerfile against the code: no Docker
// engine is needed, only the compose file model, so CI catches a compose file that would start
// a command that does not exist, pass a variable nothing reads, or publish the wrong port.
package compose

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

const root = "../.."

func mustProject(t *testing.T) *types.Project {
	t.Helper()
	dir, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yml")}},
		// The variables a user sets by hand (WEBHOOK_SECRET, API_KEY) default to empty.
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("orderflow", true) })
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	return p
}

// orderflowServices are the services built from this repository's Dockerfile: they run the
// orderflow binary, whose subcommand is the service's command.
func orderflowServices(t *testing.T, p *types.Project) map[string]types.ServiceConfig {
	t.Helper()
	out := map[string]types.ServiceConfig{}
	for name, s := range p.Services {
		if s.Build != nil {
			out[name] = s
		}
	}
	if len(out) == 0 {
		t.Fatal("no service builds the orderflow image")
	}
	return out
}

// mainPackage is cmd/orderflow parsed: every top-level function by name.
type mainPackage map[string]*ast.FuncDecl

func mustParseMain(t *testing.T) mainPackage {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(root, "cmd", "orderflow", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := mainPackage{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parsing %s: %v", f, err)
		}
		for _, d := range af.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
				m[fd.Name.Name] = fd
			}
		}
	}
	return m
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

// subcommands reads run's dispatch switch: each case naming a string that returns a call to a
// run function is a subcommand, mapped to that function.
func (m mainPackage) subcommands(t *testing.T) map[string]string {
	t.Helper()
	run := m["run"]
	if run == nil {
		t.Fatal("cmd/orderflow has no func run")
	}
	out := map[string]string{}
	ast.Inspect(run.Body, func(n ast.Node) bool {
		cc, ok := n.(*ast.CaseClause)
		if !ok || len(cc.Body) != 1 {
			return true
		}
		ret, ok := cc.Body[0].(*ast.ReturnStmt)
		if !ok || len(ret.Results) != 1 {
			return true
		}
		call, ok := ret.Results[0].(*ast.CallExpr)
		if !ok {
			return true
		}
		fn, ok := call.Fun.(*ast.Ident)
		if !ok || m[fn.Name] == nil {
			return true
		}
		for _, e := range cc.List {
			if s, ok := stringLit(e); ok {
				out[s] = fn.Name
			}
		}
		return true
	})
	if len(out) == 0 {
		t.Fatal("found no subcommand in cmd/orderflow's run")
	}
	return out
}

var envName = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$`)

// envVars lists the environment variables fn reads, following calls into the package's other
// functions: getenv("X"), env.Int("X", ...) and the other envDefaults readers, helpers called
// as f(getenv, "X", ...), and getenv(v) over a table of names written in the function.
func (m mainPackage) envVars(fn string) map[string]bool {
	seen := map[string]bool{}
	vars := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		fd := m[name]
		if fd == nil || seen[name] {
			return
		}
		seen[name] = true
		readsTable := false
		var tableNames []string
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok {
					if id.Name == "getenv" && len(n.Args) == 1 {
						if s, ok := stringLit(n.Args[0]); ok {
							vars[s] = true
						} else {
							readsTable = true
						}
					}
					visit(id.Name)
				}
				// env.Duration("RECONCILE_EVERY", ...): the envDefaults readers.
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && len(n.Args) >= 1 {
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == "env" {
						if s, ok := stringLit(n.Args[0]); ok && envName.MatchString(s) {
							vars[s] = true
						}
					}
				}
				if len(n.Args) >= 2 {
					if id, ok := n.Args[0].(*ast.Ident); ok && id.Name == "getenv" {
						if s, ok := stringLit(n.Args[1]); ok {
							vars[s] = true
						}
					}
				}
			case *ast.KeyValueExpr:
				if s, ok := stringLit(n.Value); ok && envName.MatchString(s) {
					tableNames = append(tableNames, s)
				}
			}
			return true
		})
		if readsTable {
			for _, s := range tableNames {
				vars[s] = true
			}
		}
	}
	visit(fn)
	return vars
}

func TestServicesRunRealSubcommands(t *testing.T) {
	p := mustProject(t)
	cmds := mustParseMain(t).subcommands(t)
	for name, s := range orderflowServices(t, p) {
		if len(s.Command) == 0 {
			t.Errorf("service %s runs the image without a subcommand", name)
			continue
		}
		if _, ok := cmds[s.Command[0]]; !ok {
			t.Errorf("service %s runs %q, which is not an orderflow subcommand (%v)", name, s.Command[0], slices.Sorted(mapKeys(cmds)))
		}
	}
}

func TestServicesGetOnlyVariablesTheirCommandReads(t *testing.T) {
	p := mustProject(t)
	pkg := mustParseMain(t)
	cmds := pkg.subcommands(t)
	for name, s := range orderflowServices(t, p) {
		if len(s.Command) == 0 {
			continue
		}
		fn, ok := cmds[s.Command[0]]
		if !ok {
			continue // TestServicesRunRealSubcommands reports it
		}
		reads := pkg.envVars(fn)
		for v := range s.Environment {
			if !reads[v] {
				t.Errorf("service %s sets %s, which 'orderflow %s' does not read (it reads %v)", name, v, s.Command[0], slices.Sorted(mapKeys(reads)))
			}
		}
	}
}

func TestPortsLineUp(t *testing.T) {
	p := mustProject(t)
	services := orderflowServices(t, p)
	// listen is the container port each service's HTTP listener binds; metricsPort the one
	// serving /metrics: its OPS_ADDR when it has one (the api), else the same.
	listen := map[string]string{}
	metricsPort := map[string]string{}
	for name, s := range services {
		if ops := s.Environment["OPS_ADDR"]; ops != nil {
			host, port, err := net.SplitHostPort(*ops)
			if err != nil || (host != "" && host != "0.0.0.0" && host != "::") {
				t.Errorf("service %s: OPS_ADDR %q must be a port Prometheus can reach in the network", name, *ops)
			}
			metricsPort[name] = port
			for _, pc := range s.Ports {
				if strconv.Itoa(int(pc.Target)) == port {
					t.Errorf("service %s publishes its ops port %d: /metrics must not be reachable from outside", name, pc.Target)
				}
			}
		}
		addr := s.Environment["HTTP_ADDR"]
		if addr == nil {
			if len(s.Ports) > 0 {
				t.Errorf("service %s publishes %v but sets no HTTP_ADDR, so it listens on its loopback default", name, s.Ports)
			}
			continue
		}
		host, port, err := net.SplitHostPort(*addr)
		if err != nil {
			t.Errorf("service %s: HTTP_ADDR %q: %v", name, *addr, err)
			continue
		}
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("service %s listens on %s, which other containers cannot reach", name, *addr)
		}
		listen[name] = port
		if metricsPort[name] == "" {
			metricsPort[name] = port
		}
		for _, pc := range s.Ports {
			if strconv.Itoa(int(pc.Target)) != port {
				t.Errorf("service %s publishes %s:%d, but listens on port %s", name, pc.Published, pc.Target, port)
			}
		}
	}

	b, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "prometheus.compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &prom); err != nil {
		t.Fatalf("parsing prometheus.compose.yml: %v", err)
	}
	scraped := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					t.Errorf("scrape target %q: %v", target, err)
					continue
				}
				scraped[host] = true
				if want, ok := metricsPort[host]; !ok {
					t.Errorf("Prometheus scrapes %s, which is no orderflow service with an HTTP_ADDR", target)
				} else if port != want {
					t.Errorf("Prometheus scrapes %s, but %s serves /metrics on port %s", target, host, want)
				}
				if svc := st.Labels["service"]; svc != "" && svc != host {
					t.Errorf("scrape target %s is labelled service=%s", target, svc)
				}
			}
		}
	}
	for name := range listen {
		if !scraped[name] {
			t.Errorf("service %s serves /metrics on port %s, but Prometheus does not scrape it", name, metricsPort[name])
		}
	}

	// A service that calls another by URL must use the port that one listens on.
	for name, s := range services {
		for _, v := range []string{"API_URL"} {
			raw := s.Environment[v]
			if raw == nil || *raw == "" {
				continue
			}
			u, err := url.Parse(*raw)
			if err != nil {
				t.Errorf("service %s: %s %q: %v", name, v, *raw, err)
				continue
			}
			if want, ok := listen[u.Hostname()]; !ok || u.Port() != want {
				t.Errorf("service %s: %s=%s, but %s listens on port %q", name, v, *raw, u.Hostname(), want)
			}
		}
	}
}

// TestImageRunsAsNonRoot reads the Dockerfile's final stage: its base is distroless's nonroot
// variant, or it switches to a non-root USER.
func TestImageRunsAsNonRoot(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var from, user string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			from, user = f[1], ""
		case "USER":
			user = f[1]
		}
	}
	nonRootBase := strings.Contains(from, "distroless") && strings.HasSuffix(from, ":nonroot")
	nonRootUser := user != "" && user != "root" && !strings.HasPrefix(user, "0") && user != "0:0"
	if !nonRootBase && !nonRootUser {
		t.Fatalf("the final stage (FROM %s, USER %q) runs as root; use a distroless :nonroot base or USER 65532", from, user)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
