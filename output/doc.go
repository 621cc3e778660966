// Package output is the output vocabulary of the mailtls commands: aligned
// text tables, CSV, indented JSON, the JSON Lines and CSV rows of
// `mailtls deliveries` (the contract in ARCHITECTURE.md), and the escaping
// of log data and database contents before they reach a terminal.
package output
