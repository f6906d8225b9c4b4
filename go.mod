module postern

go 1.26.0

require golang.org/x/sys v0.49.0

require (
	github.com/emersion/go-imap/v2 v2.0.0-beta.8
	github.com/emersion/go-message v0.18.2
	golang.org/x/crypto v0.58.0
)

require (
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6 // indirect
	golang.org/x/text v0.43.0 // indirect
)

require (
	github.com/miekg/dns v1.1.73
	golang.org/x/net v0.60.0 // indirect
)
