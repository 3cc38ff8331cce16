#!/bin/sh
# etcd's TLS files for the compose cluster, made once (at first start) in $CALICO_ETCD_TLS_DIR:
#   ca.pem, ca-key.pem          a CA of this cluster's own
#   etcd.pem, etcd-key.pem      etcd's certificate: server and peer, for $CALICO_NODE_IP and 127.0.0.1
#   client.pem, client-key.pem  the client certificate the master, the node and calicoctl use
# Keys are readable by root only. Files already there are kept; remove the folder to make new ones.
set -eu
d="${CALICO_ETCD_TLS_DIR:-/etc/calico/etcd}"
: "${CALICO_NODE_IP:?set CALICO_NODE_IP}"
if [ -f "$d/ca.pem" ] && [ -f "$d/etcd.pem" ] && [ -f "$d/client.pem" ]; then
  echo "etcd TLS files kept in $d"
  exit 0
fi
mkdir -p "$d"
cd "$d"
umask 077
issue() { # name, extensions
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n%s\n' "$2" >"$1.ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$1-key.pem"
  openssl req -new -key "$1-key.pem" -subj "/CN=calico-$1" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 -sha256 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days 3650 -subj /CN=calico-etcd-ca -out ca.pem
issue etcd "subjectAltName=IP:$CALICO_NODE_IP,IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth"
issue client 'extendedKeyUsage=clientAuth'
rm -f ca.srl
chmod 644 ca.pem etcd.pem client.pem
echo "etcd TLS files made in $d"
