package testpeer

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func TestAuthServerClientCredentialsAndSwitches(t *testing.T) {
	a := StartAuthServer(t, AuthOptions{AccessTokenLifespan: 2 * time.Second})
	cc := &clientcredentials.Config{ClientID: "relay-test", ClientSecret: "relay-secret", TokenURL: a.TokenURL, Scopes: []string{"mail"}, AuthStyle: oauth2.AuthStyleInHeader}
	ctx := context.Background()

	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ei, _ := tok.Extra("expires_in").(float64); ei != 2 {
		t.Errorf("expires_in = %v; want 2", tok.Extra("expires_in"))
	}
	info, err := a.Validate(ctx, tok.AccessToken)
	if err != nil || info.ClientID != "relay-test" {
		t.Errorf("Validate = %+v, %v", info, err)
	}
	if _, err := a.Validate(ctx, "forged"); err == nil {
		t.Error("Validate accepted a forged token")
	}
	if n := a.TokenRequests("client_credentials"); n != 1 {
		t.Errorf("TokenRequests = %d; want 1", n)
	}

	if err := a.SetTokenFailure(AuthFailRefuse); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Token(ctx); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("refusing: %v; want connection refused", err)
	}
	if err := a.SetTokenFailure(AuthFail503); err != nil {
		t.Fatal(err)
	}
	var re *oauth2.RetrieveError
	if _, err := cc.Token(ctx); !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("503: %v", err)
	}
	if err := a.SetTokenFailure(AuthFailHang); err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = cc.Token(hctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hanging: %v; want a deadline", err)
	}
	if err := a.SetTokenFailure(AuthFailNone); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Token(ctx); err != nil {
		t.Errorf("after the switches: %v", err)
	}

	bad := *cc
	bad.ClientSecret = "wrong"
	if _, err := bad.Token(ctx); !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Errorf("wrong secret: %v; want invalid_client", err)
	}
}
