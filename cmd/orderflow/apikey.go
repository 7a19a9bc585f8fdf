package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"orderflow"
	"orderflow/api"
	"orderflow/postgres"
)

const apikeyUsage = `usage: orderflow apikey <create|list|revoke> [flags]

  create -client NAME -role client|fulfiller|admin [-name TEXT]
         prints the new key on stdout, once: it is stored only as a digest
  list   [-json]   every key with its client, role and state; never a key
  revoke KEY_ID... the key stops working in a running API within seconds
`

func runAPIKey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, apikeyUsage)
		return errUsage
	}
	sub, rest := args[0], args[1:]
	fs := newFlagSet("apikey "+sub, stderr)
	dbURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL (env DATABASE_URL)")
	open := func() (*postgres.DB, error) {
		if err := requireFlag("database-url", *dbURL, "DATABASE_URL"); err != nil {
			return nil, err
		}
		return postgres.Open(ctx, *dbURL, 2)
	}
	switch sub {
	case "create":
		client := fs.String("client", "", "the client the key acts for: it owns the orders the key creates")
		role := fs.String("role", "", "client, fulfiller or admin (docs/API.md)")
		name := fs.String("name", "", "what the key is for, shown by list")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		if p := orderflow.ValidateID(*client); p != "" {
			return fmt.Errorf("%w: -client %s", errUsage, p)
		}
		if !orderflow.Role(*role).Valid() {
			return fmt.Errorf("%w: -role must be client, fulfiller or admin", errUsage)
		}
		if p := orderflow.ValidateText(*name, 200); p != "" {
			return fmt.Errorf("%w: -name %s", errUsage, p)
		}
		db, err := open()
		if err != nil {
			return err
		}
		defer db.Close()
		key, id, digest, err := api.NewKey()
		if err != nil {
			return err
		}
		k, err := db.CreateAPIKey(ctx, orderflow.APIKey{ID: id, ClientID: *client, Role: orderflow.Role(*role), Name: *name}, digest)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, key)
		fmt.Fprintf(stderr, "created api key %s for client %s, role %s; it is shown only this once\n", k.ID, k.ClientID, k.Role)
		return nil
	case "list":
		asJSON := fs.Bool("json", false, "print JSON")
		if err := parseFlags(fs, rest); err != nil {
			return err
		}
		db, err := open()
		if err != nil {
			return err
		}
		defer db.Close()
		keys, err := db.APIKeys(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			if keys == nil {
				keys = []orderflow.APIKey{}
			}
			return json.NewEncoder(stdout).Encode(keys)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCLIENT\tROLE\tCREATED\tREVOKED\tNAME")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.ClientID, k.Role, k.CreatedAt.Format(time.RFC3339), revoked, k.Name)
		}
		return tw.Flush()
	case "revoke":
		ids, err := parseWithArgs(fs, rest)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return fmt.Errorf("%w: name the key ids to revoke (orderflow apikey list shows them)", errUsage)
		}
		db, err := open()
		if err != nil {
			return err
		}
		defer db.Close()
		for _, id := range ids {
			k, err := db.RevokeAPIKey(ctx, id)
			if errors.Is(err, postgres.ErrNoAPIKey) {
				return fmt.Errorf("no api key with id %q", id)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked %s (client %s, role %s) at %s\n", k.ID, k.ClientID, k.Role, k.RevokedAt.Format(time.RFC3339))
		}
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, apikeyUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "orderflow apikey: unknown subcommand %q\n\n%s", sub, apikeyUsage)
		return errUsage
	}
}

// parseWithArgs parses flags that may come before or after positional arguments and returns
// the positional ones.
func parseWithArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errUsage
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			pos, args = append(pos, args[0]), args[1:]
		}
		if len(args) == 0 {
			return pos, nil
		}
	}
}
