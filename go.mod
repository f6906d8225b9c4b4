module postern

go 1.26.0

require golang.org/x/sys v0.49.0

require golang.org/x/crypto v0.58.0

require (
	github.com/miekg/dns v1.1.73
	golang.org/x/net v0.60.0 // indirect
)
