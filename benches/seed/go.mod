module hello-stateful-seed

go 1.19
