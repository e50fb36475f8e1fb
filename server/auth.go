package server

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// verifier checks AUTH tokens as docs/protocol.md ("JWT mode") describes: HS256 with the
// secret's raw bytes, or RS256 when the secret is a PEM public key; exp
// required with 60 s leeway; sub must be a non-empty string. alg "none"
// and every other algorithm are refused by the method allow-list.
type verifier struct {
	key     any
	methods []string
}

func newVerifier(secret string) (*verifier, error) {
	secret = strings.ReplaceAll(secret, `\n`, "\n")
	if strings.HasPrefix(strings.TrimSpace(secret), "-----BEGIN") {
		pub, err := jwt.ParseRSAPublicKeyFromPEM([]byte(secret))
		if err != nil {
			return nil, fmt.Errorf("server: JWT secret looks like PEM but is not an RSA public key: %w", err)
		}
		return &verifier{key: pub, methods: []string{"RS256"}}, nil
	}
	return &verifier{key: []byte(secret), methods: []string{"HS256"}}, nil
}

var errNoSubject = errors.New("token has no sub")

// verify returns the token's subject.
func (v *verifier) verify(token string) (string, error) {
	t, err := jwt.Parse(token, func(t *jwt.Token) (any, error) {
		switch v.key.(type) {
		case *rsa.PublicKey, []byte:
			return v.key, nil
		}
		return nil, errors.New("no key")
	},
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(60*time.Second),
	)
	if err != nil {
		return "", err
	}
	sub, err := t.Claims.GetSubject()
	if err != nil || sub == "" {
		return "", errNoSubject
	}
	return sub, nil
}
