// Package schemas holds the JSON Schema (draft 2020-12) of every event's data, one file per
// event type and version: <type>/v<version>.json. A published file never changes; a new
// version is a new file. The rules for what a new version may change are in docs/SCHEMAS.md.
//
// A schema's $id is IDBase followed by its path on the API, so the id both names the schema
// (the CloudEvents dataschema attribute) and tells where to fetch it: the API serves
// /v1/schemas/order.created/1.json, whose $id is
// https://orderflow.dev/v1/schemas/order.created/1.json.
package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// IDBase prefixes every schema's path to make its $id.
const IDBase = "https://orderflow.dev"

//go:embed */v*.json
var files embed.FS

// EventType is one event type and the versions of its schema, oldest first.
type EventType struct {
	Type     string
	Versions []int
}

// Latest is the newest version of the type's schema, the one new events are written against.
func (e EventType) Latest() int { return e.Versions[len(e.Versions)-1] }

var eventTypes = mustIndex(files)

// mustIndex lists the embedded files; a file outside <type>/v<n>.json is a build mistake.
func mustIndex(fsys fs.FS) []EventType {
	names, err := fs.Glob(fsys, "*/v*.json")
	if err != nil {
		panic(err)
	}
	byType := map[string][]int{}
	for _, name := range names {
		dir, file := path.Split(name)
		v, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(file, "v"), ".json"))
		if err != nil || v < 1 {
			panic(fmt.Sprintf("schemas: %s is not named <type>/v<version>.json", name))
		}
		t := strings.TrimSuffix(dir, "/")
		byType[t] = append(byType[t], v)
	}
	out := make([]EventType, 0, len(byType))
	for t, vs := range byType {
		slices.Sort(vs)
		out = append(out, EventType{Type: t, Versions: vs})
	}
	slices.SortFunc(out, func(a, b EventType) int { return strings.Compare(a.Type, b.Type) })
	return out
}

// EventTypes lists every event type with a schema, sorted by name.
func EventTypes() []EventType {
	out := make([]EventType, len(eventTypes))
	for i, e := range eventTypes {
		out[i] = EventType{Type: e.Type, Versions: slices.Clone(e.Versions)}
	}
	return out
}

// Path is where the API serves the schema of eventType at version.
func Path(eventType string, version int) string {
	return "/v1/schemas/" + eventType + "/" + strconv.Itoa(version) + ".json"
}

// ID is the schema's $id, the value of the CloudEvents dataschema attribute of an event
// written against it.
func ID(eventType string, version int) string { return IDBase + Path(eventType, version) }

// Schema returns the schema of eventType at version.
func Schema(eventType string, version int) ([]byte, bool) {
	if strings.ContainsAny(eventType, "/\\") || version < 1 {
		return nil, false
	}
	b, err := files.ReadFile(eventType + "/v" + strconv.Itoa(version) + ".json")
	if err != nil {
		return nil, false
	}
	return b, true
}
