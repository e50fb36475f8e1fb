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
	leeway  time.Duration // for exp and nbf (Config.TokenLeeway)
}

func newVerifier(secret string, leeway time.Duration) (*verifier, error) {
	secret = strings.ReplaceAll(secret, `\n`, "\n")
	if strings.HasPrefix(strings.TrimSpace(secret), "-----BEGIN") {
		pub, err := jwt.ParseRSAPublicKeyFromPEM([]byte(secret))
		if err != nil {
			return nil, fmt.Errorf("server: JWT secret looks like PEM but is not an RSA public key: %w", err)
		}
		return &verifier{key: pub, methods: []string{"RS256"}, leeway: leeway}, nil
	}
	return &verifier{key: []byte(secret), methods: []string{"HS256"}, leeway: leeway}, nil
}

var errNoSubject = errors.New("token has no sub")

// identity is what an accepted token says about its connection.
type identity struct {
	user string
	// end is when the token stops being accepted (exp plus the leeway):
	// the server closes the connection then (conn.watchExpiry).
	end   time.Time
	perms *perms // nil: every name allowed
}

// verify checks token and returns what it grants.
func (v *verifier) verify(token string) (identity, error) {
	var claims jwt.MapClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		switch v.key.(type) {
		case *rsa.PublicKey, []byte:
			return v.key, nil
		}
		return nil, errors.New("no key")
	},
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.leeway),
	)
	if err != nil {
		return identity{}, err
	}
	sub, err := claims.GetSubject()
	if err != nil || sub == "" {
		return identity{}, errNoSubject
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return identity{}, jwt.ErrTokenRequiredClaimMissing
	}
	p, err := parsePerms(claims)
	if err != nil {
		return identity{}, err
	}
	return identity{user: sub, end: exp.Add(v.leeway), perms: p}, nil
}
