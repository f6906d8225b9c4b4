package main

import (
	"crypto/tls"
	"fmt"

	"postern/internal/config"
)

// loadTLS reads the certificate and key pairs named by
// smtpd_tls_cert_file/smtpd_tls_key_file. It runs before the privilege
// drop: the key files are root's, and the unprivileged smtpd never opens
// them (it keeps the parsed keys in memory only). nil means no TLS.
func loadTLS(cfg *config.Config) (*tls.Config, error) {
	certs, keys := cfg.List("smtpd_tls_cert_file"), cfg.List("smtpd_tls_key_file")
	level := cfg.Get("smtpd_tls_security_level")
	if len(certs) == 0 {
		if level == "encrypt" || cfg.Bool("smtpd_tls_wrappermode") {
			return nil, fmt.Errorf("smtpd_tls_security_level=%s or smtpd_tls_wrappermode=yes needs smtpd_tls_cert_file", level)
		}
		return nil, nil
	}
	if level == "none" && !cfg.Bool("smtpd_tls_wrappermode") {
		return nil, nil
	}
	if len(keys) != len(certs) {
		return nil, fmt.Errorf("smtpd_tls_key_file names %d files, smtpd_tls_cert_file %d: they pair by position", len(keys), len(certs))
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	for i := range certs {
		pair, err := tls.LoadX509KeyPair(certs[i], keys[i])
		if err != nil {
			return nil, fmt.Errorf("smtpd_tls_cert_file %s with smtpd_tls_key_file %s: %w", certs[i], keys[i], err)
		}
		tc.Certificates = append(tc.Certificates, pair)
	}
	return tc, nil
}
