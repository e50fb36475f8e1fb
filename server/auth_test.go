package server

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/topgun-go/topgun/sync/wire"
)

const testSecret = "test-secret-please-change"

func hs256(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func valid(sub string) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
}

// TestJWT: only a valid token gets in; the rest get AUTH_FAIL with a reason
// and the connection is closed.
func TestJWT(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{JWTSecret: testSecret})
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid("mallory")).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, token, reason string
	}{
		{"expired", hs256(t, testSecret, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(-2 * time.Minute).Unix()}), "expired"},
		{"wrong key", hs256(t, "another-secret", valid("u")), "signature"},
		{"alg none", none, "signature"},
		{"no exp", hs256(t, testSecret, jwt.MapClaims{"sub": "u"}), "exp"},
		{"no sub", hs256(t, testSecret, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}), "sub"},
		{"garbage", "not-a-jwt", "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := dial(t, url)
			expect[wire.AuthRequired](r)
			r.send(wire.Auth{Token: tc.token})
			f := expect[wire.AuthFail](r)
			if !strings.Contains(f.Error, tc.reason) {
				t.Errorf("AUTH_FAIL %q, want reason containing %q", f.Error, tc.reason)
			}
			r.closed()
		})
	}
	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		r := dial(t, url)
		expect[wire.AuthRequired](r)
		// Before AUTH, other frames are answered with ERROR 401, not silence.
		r.send(wire.Ping{Timestamp: 1})
		if e := expect[wire.Error](r); e.Code != 401 {
			t.Errorf("pre-auth PING: %+v", e)
		}
		r.send(wire.Auth{Token: hs256(t, testSecret, valid("alice"))})
		if a := expect[wire.AuthAck](r); a.UserID != "alice" {
			t.Errorf("ack %+v", a)
		}
		r.send(wire.Ping{Timestamp: 2})
		expect[wire.Pong](r)
	})
}

func TestJWTAuthTimeout(t *testing.T) {
	t.Parallel()
	url, _ := start(t, Config{JWTSecret: testSecret, AuthTimeout: 200 * time.Millisecond})
	r := dial(t, url)
	expect[wire.AuthRequired](r)
	r.closed()
}

func TestJWTRS256(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	// Environment variables often carry the PEM with literal \n.
	url, _ := start(t, Config{JWTSecret: strings.ReplaceAll(pemKey, "\n", `\n`)})

	good, err := jwt.NewWithClaims(jwt.SigningMethodRS256, valid("bob")).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	r := dial(t, url)
	expect[wire.AuthRequired](r)
	r.send(wire.Auth{Token: good})
	if a := expect[wire.AuthAck](r); a.UserID != "bob" {
		t.Errorf("ack %+v", a)
	}

	// Algorithm confusion: an HS256 token signed with the public key bytes.
	r2 := dial(t, url)
	expect[wire.AuthRequired](r2)
	r2.send(wire.Auth{Token: hs256(t, pemKey, valid("mallory"))})
	expect[wire.AuthFail](r2)
	r2.closed()
}

func TestNoSecretRefused(t *testing.T) {
	t.Parallel()
	_, err := New(Config{Store: nil})
	if err == nil {
		t.Fatal("New without store succeeded")
	}
	if _, err := New(Config{Store: storageForTest(t)}); err == nil || !strings.Contains(err.Error(), "no-auth") {
		t.Fatalf("New without secret: %v", err)
	}
}
