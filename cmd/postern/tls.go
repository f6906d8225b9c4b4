package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"postern/internal/config"
)

// cmdTLS implements `postern tls new-server-cert [-o DIR] [-days N]
// [name...]`: a self-signed ECDSA certificate for smtpd, as postfix tls
// new-server-cert makes one, for a demo or until a real one is in place.
func cmdTLS(dir string, args []string) error {
	if len(args) == 0 || args[0] != "new-server-cert" {
		return usageError("tls new-server-cert [-o DIR] [-days N] [hostname...]")
	}
	fs := flag.NewFlagSet("tls", flag.ContinueOnError)
	out := fs.String("o", "", "directory for cert.pem and key.pem (default: the configuration directory)")
	days := fs.Int("days", 365, "validity in days")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError("tls new-server-cert [-o DIR] [-days N] [hostname...]")
	}
	if *days < 1 || *days > 3650 {
		return usageError("-days must be between 1 and 3650")
	}
	if *out == "" {
		*out = dir
	}
	names := fs.Args()
	if len(names) == 0 {
		cfg, err := config.Load(dir)
		if err != nil {
			return err
		}
		names = []string{cfg.Get("myhostname")}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Duration(*days) * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(*out, "cert.pem"), filepath.Join(*out, "key.pem")
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists; remove it first", p)
		}
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s (self-signed for %v, %d days)\n", certPath, keyPath, names, *days)
	fmt.Printf("use them: postern config -e smtpd_tls_cert_file=%s smtpd_tls_key_file=%s\n", certPath, keyPath)
	return nil
}
