module lmbff.dev/lmbff

go 1.19
