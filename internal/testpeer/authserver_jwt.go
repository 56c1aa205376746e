package testpeer

import (
	"crypto"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/storage"
)

// CertificateClient is a confidential client that authenticates with a
// client assertion (RFC 7523 §2.2) signed by the private key of its
// certificate, as Entra's certificate credentials: fosite checks the
// signature with PublicKey, aud = the token URL, iss = sub = the client
// ID, exp, and that no jti is used twice.
type CertificateClient struct {
	ID        string
	PublicKey crypto.PublicKey
}

// ServiceAccount is an issuer of JWT bearer grants (RFC 7523 §2.1), as a
// Google service account with domain-wide delegation: its assertions,
// signed by the key KeyID, may impersonate each of Subjects and ask for
// Scopes.
type ServiceAccount struct {
	Email     string
	KeyID     string
	PublicKey crypto.PublicKey
	Subjects  []string
	Scopes    []string
}

func registerJWTClients(st *authStore, opts AuthOptions) {
	for _, c := range opts.CertificateClients {
		st.Clients[c.ID] = &fosite.DefaultOpenIDConnectClient{
			DefaultClient: &fosite.DefaultClient{
				ID:            c.ID,
				RedirectURIs:  opts.RedirectURIs,
				GrantTypes:    []string{"client_credentials", "authorization_code", "refresh_token"},
				ResponseTypes: []string{"code"},
				Scopes:        opts.Scopes,
			},
			JSONWebKeys:                       &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: c.PublicKey, Use: "sig", Algorithm: "RS256"}}},
			TokenEndpointAuthMethod:           "private_key_jwt",
			TokenEndpointAuthSigningAlgorithm: "RS256",
		}
	}
	for _, sa := range opts.ServiceAccounts {
		ipk := storage.IssuerPublicKeys{Issuer: sa.Email, KeysBySub: map[string]storage.SubjectPublicKeys{}}
		for _, sub := range sa.Subjects {
			ipk.KeysBySub[sub] = storage.SubjectPublicKeys{Subject: sub, Keys: map[string]storage.PublicKeyScopes{
				sa.KeyID: {Key: &jose.JSONWebKey{Key: sa.PublicKey, KeyID: sa.KeyID, Algorithm: "RS256", Use: "sig"}, Scopes: sa.Scopes},
			}}
		}
		st.IssuerPublicKeys[sa.Email] = ipk
	}
}
