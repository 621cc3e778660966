package main

import (
	"os"

	"github.com/mailtls/mailtls/conffile"
	"github.com/mailtls/mailtls/internal/cliargs"
)

// defaultConfig is read when present; --config names another file, which
// must then exist.
const defaultConfig = conffile.Default

// conf is how every command reads the config file: the tlsrpt commands'
// settings share it with the daemon's.
var conf = cliargs.Config{Shared: tlsrptSettings, Getenv: os.Getenv}

var (
	loadConfig        = conf.Apply        // the config file, for every flag not given
	loadConfigSetting = conf.ApplySetting // one setting of it
	configFile        = conf.File
	configNames       = conf.Names
)
