package oauth_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/oauth2"

	"github.com/relaymail/relay/config"
	"github.com/relaymail/relay/oauth"
)

// TestEndpointPresets checks the endpoints each provider fills in, from
// the configurations of testdata/config/good parsed without their secrets.
func TestEndpointPresets(t *testing.T) {
	entra := func(tenant string) oauth2.Endpoint {
		base := "https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/"
		return oauth2.Endpoint{AuthURL: base + "authorize", TokenURL: base + "token", DeviceAuthURL: base + "devicecode"}
	}
	google := oauth2.Endpoint{AuthURL: "https://accounts.google.com/o/oauth2/auth", TokenURL: "https://oauth2.googleapis.com/token"}
	tests := []struct {
		file, client string
		want         oauth2.Endpoint
	}{
		{"microsoft.toml", "entra", entra("contoso.onmicrosoft.com")},
		{"google.toml", "google", google},
		{"headless.toml", "entra-cert", entra("00000000-0000-0000-0000-000000000000")},
		{"headless.toml", "workspace", google}, // Google's device flow does not grant mail
		{"headless.toml", "entra-public", entra("00000000-0000-0000-0000-000000000000")},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.client, func(t *testing.T) {
			path := filepath.Join("..", "testdata", "config", "good", tt.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(path, data)
			if err != nil {
				t.Fatalf("Parse(%s): %v", path, err)
			}
			oc := cfg.OAuth2ClientNamed(tt.client)
			if oc == nil {
				t.Fatalf("%s: no OAuth2 client %q", path, tt.client)
			}
			if got := oauth.Endpoint(oc); got != tt.want {
				t.Errorf("Endpoint(%s) = %+v; want %+v", tt.client, got, tt.want)
			}
		})
	}
}

// TestEndpointOverrides checks that the client's own URLs win over its
// provider's, and that a client without a provider keeps its own.
func TestEndpointOverrides(t *testing.T) {
	oc := &config.OAuth2Client{Provider: "microsoft", Tenant: "contoso", TokenURL: "https://proxy.example.com/token", DeviceAuthURL: "https://proxy.example.com/device"}
	want := oauth2.Endpoint{
		AuthURL:       "https://login.microsoftonline.com/contoso/oauth2/v2.0/authorize",
		TokenURL:      "https://proxy.example.com/token",
		DeviceAuthURL: "https://proxy.example.com/device",
	}
	if got := oauth.Endpoint(oc); got != want {
		t.Errorf("Endpoint(microsoft with token_url) = %+v; want %+v", got, want)
	}
	own := &config.OAuth2Client{AuthURL: "https://as.example.com/a", TokenURL: "https://as.example.com/t"}
	if got := oauth.Endpoint(own); got != (oauth2.Endpoint{AuthURL: own.AuthURL, TokenURL: own.TokenURL}) {
		t.Errorf("Endpoint(no provider) = %+v; want its own URLs", got)
	}
}
