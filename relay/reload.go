package relay

import (
	"reflect"
	"strings"

	"github.com/relaymail/relay/config"
)

// reloadClass says when a change to a [server] or [admin] setting takes
// effect. Every toml key of config.Server and config.Admin has one
// (reload_test.go fails for a key that is missing here).
type reloadClass int

const (
	// appliedOnReload: read from the configuration in effect for each
	// connection or message, so a SIGHUP applies it.
	appliedOnReload reloadClass = iota + 1
	// needsRestart: fixed when relay starts (a listener, TLS material, a
	// limit go-smtp holds), so a reload that changes it only warns.
	needsRestart
)

// serverKeys classifies the [server] table.
var serverKeys = map[string]reloadClass{
	"listen":                     needsRestart,
	"hostname":                   needsRestart, // the greeting (go-smtp's Domain)
	"data_dir":                   needsRestart, // the spool and token store are open
	"max_message_bytes":          needsRestart, // go-smtp's SIZE and DATA limit
	"max_recipients":             needsRestart, // go-smtp's RCPT limit
	"read_timeout":               needsRestart,
	"write_timeout":              needsRestart,
	"tls_cert_file":              needsRestart,
	"tls_key_file":               needsRestart,
	"smtps_listen":               needsRestart,    // a listener, like listen
	"max_header_bytes":           appliedOnReload, // session.go, per message
	"allow_unauthenticated":      appliedOnReload, // Policy, per connection
	"default_profile":            appliedOnReload, // Policy, per message
	"max_connections":            appliedOnReload, // limitListener, per connection
	"max_connections_per_client": appliedOnReload,
}

// adminKeys classifies the [admin] table: the admin listener is made once.
var adminKeys = map[string]reloadClass{
	"listen":        needsRestart,
	"password_hash": needsRestart,
}

// RestartOnly names, as "table.key", the settings that differ between old
// and cur but take effect only after a restart; Apply applies the rest.
func RestartOnly(old, cur *config.Config) []string {
	var keys []string
	keys = append(keys, restartOnly("server", serverKeys, old.Server, cur.Server)...)
	keys = append(keys, restartOnly("admin", adminKeys, old.Admin, cur.Admin)...)
	return keys
}

// restartOnly compares two values of one table's struct field by field.
func restartOnly(table string, classes map[string]reloadClass, old, cur any) []string {
	var keys []string
	ov, cv := reflect.ValueOf(old), reflect.ValueOf(cur)
	for i := 0; i < ov.NumField(); i++ {
		key := tomlKey(ov.Type().Field(i))
		if classes[key] != needsRestart {
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), cv.Field(i).Interface()) {
			keys = append(keys, table+"."+key)
		}
	}
	return keys
}

// tomlKey is the key a struct field is read from, or "" for a field the
// file does not set.
func tomlKey(f reflect.StructField) string {
	key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if key == "-" {
		return ""
	}
	return key
}
