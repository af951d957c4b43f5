// Package httpauth is a net/http middleware on sessiond: one Authenticate
// per request, the caller's identity on the request's context.
//
//	mux.Handle("/orders", httpauth.Require(client, "/login", "viewSales")(orders))
//
// A request without a usable session cookie (missing, unknown, ended) is
// redirected to the login page, or answered 401 when loginURL is empty; a
// session without the privileges asked is answered 403.
package httpauth

import (
	"context"
	"errors"
	"log"
	"net/http"

	"github.com/sessiond/sessiond/clients/go/sessiond"
)

// Cookie is the cookie that carries the session token.
const Cookie = "session"

type identityKey struct{}

// Identity answers the identity Require put on a request's context.
func Identity(ctx context.Context) *sessiond.Identity {
	id, _ := ctx.Value(identityKey{}).(*sessiond.Identity)
	return id
}

// Require authenticates every request with sessiond, asking for
// privileges, before calling next.
func Require(client *sessiond.Client, loginURL string, privileges ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token := ""
			if cookie, err := r.Cookie(Cookie); err == nil {
				token = cookie.Value
			}
			id, err := client.Authenticate(r.Context(), token, privileges...)
			var login *sessiond.LoginRequiredError
			switch {
			case errors.As(err, &login) && loginURL != "":
				http.Redirect(w, r, loginURL, http.StatusSeeOther)
			case errors.As(err, &login):
				http.Error(w, "sign in again", http.StatusUnauthorized)
			case err != nil:
				log.Printf("sessiond: %v", err)
				http.Error(w, "sessions are unavailable", http.StatusServiceUnavailable)
			case !id.AllGranted:
				http.Error(w, "forbidden", http.StatusForbidden)
			default:
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
			}
		})
	}
}
