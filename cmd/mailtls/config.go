package main

import (
	"os"

	"github.com/mailtls/mailtls/internal/cliargs"
)

// conf is how every command reads the config file: the tlsrpt commands'
// settings share it with the daemon's.
var conf = cliargs.Config{Shared: tlsrptSettings, Getenv: os.Getenv}
