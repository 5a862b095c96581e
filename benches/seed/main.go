// The seed's Go program from the original notes, as printed there, for the side-by-side
// benchmark (benches/bench.py). Two changes only: the notes' listing uses fmt without importing
// it (it does not compile as printed), and the listen address and data file, hardcoded there as
// :8000 and /etc/stateful/hello, can be overridden with LISTEN_ADDR and DATA_FILE (the names
// hello-stateful reads) so that the bench can point it at its own. Everything else is the
// seed's: the data file opened per request with O_CREATE|O_APPEND|O_RDWR and never synced,
// net.LookupSRV per /get request with no cache.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
)

// env returns the environment variable `name`, or `def` when it is unset or empty.
func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	dataFile := env("DATA_FILE", "/etc/stateful/hello")
	listenAddr := env("LISTEN_ADDR", ":8000")
	http.HandleFunc("/store", func(writer http.ResponseWriter, request *http.Request) {
		name, _ := os.Hostname()
		buf := bufio.NewReader(request.Body)
		file, err := os.OpenFile(dataFile, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0644)
		defer file.Close()
		if err != nil {
			log.Println("open file error:", err)
			return
		}
		n, err := buf.WriteTo(file)
		if err != nil {
			log.Println("write to file error:", err)
			return
		}
		if n == 0 {
			_, err := file.WriteString("hello from v2:" + name)
			if err != nil {
				log.Println("write hello error:", err)
				return
			}
		}
		_, _ = writer.Write([]byte("hello from v2:" + name))
	})
	http.HandleFunc("/get", func(writer http.ResponseWriter, request *http.Request) {
		cname, srv, err := net.LookupSRV("", "", "hello-stateful-service")
		if err != nil {
			log.Println("lookup ip failed:", err)
		}
		var buf bytes.Buffer
		buf.WriteString(cname + "\n")
		for _, s := range srv {
			buf.WriteString(fmt.Sprintf("%s:%d\n", s.Target, s.Port))
		}
		_, err = writer.Write(buf.Bytes())
		if err != nil {
			log.Println("write buf err:", err)
		}
	})
	err := http.ListenAndServe(listenAddr, nil)
	if err != nil {
		log.Fatalln(err)
	}
}
