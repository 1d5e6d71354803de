// etcd built from the same module graph as kube-apiserver, so the pair is one the Kubernetes
// release was tested with (Debian's etcd-server 3.4 is older than that release supports).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
