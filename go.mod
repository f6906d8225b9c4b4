module postern

go 1.26.0

require (
	github.com/moby/sys/capability v0.5.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
