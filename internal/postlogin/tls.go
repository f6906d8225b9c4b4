package postlogin

import (
	"crypto/tls"
	"fmt"

	"postern/internal/config"
)

// ServerTLS loads the certificate and key pairs named by
// <proto>_tls_cert_file and <proto>_tls_key_file (proto "pop3d" or
// "imapd"; by default the smtpd files). It runs before the privilege drop:
// the key files are root's, and the unprivileged login process keeps only
// the parsed keys. nil means no TLS: then STLS/STARTTLS is not offered,
// and implicit TLS (<proto>_tls_wrappermode) is an error.
func ServerTLS(cfg *config.Config, proto string) (*tls.Config, error) {
	certSet, keySet := proto+"_tls_cert_file", proto+"_tls_key_file"
	certs, keys := cfg.List(certSet), cfg.List(keySet)
	if len(certs) == 0 {
		if cfg.Bool(proto + "_tls_wrappermode") {
			return nil, fmt.Errorf("%s_tls_wrappermode=yes needs %s", proto, certSet)
		}
		return nil, nil
	}
	if len(keys) != len(certs) {
		return nil, fmt.Errorf("%s names %d files, %s %d: they pair by position", keySet, len(keys), certSet, len(certs))
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	for i := range certs {
		pair, err := tls.LoadX509KeyPair(certs[i], keys[i])
		if err != nil {
			return nil, fmt.Errorf("%s %s with %s %s: %w", certSet, certs[i], keySet, keys[i], err)
		}
		tc.Certificates = append(tc.Certificates, pair)
	}
	return tc, nil
}
