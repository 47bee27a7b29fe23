module github.com/corral-dev/corral

go 1.26

require go.uber.org/goleak v1.3.0
