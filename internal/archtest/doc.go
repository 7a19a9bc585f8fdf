// Package archtest holds the import-direction test: dependencies point one way, from cmd to
// services and adapters to the root domain and small leaf packages. The rules live in its
// tests, checked against the module's real package graph on every go test run.
package archtest
