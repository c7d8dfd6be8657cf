#!/usr/bin/env bash
# Makes a local certificate authority and a server certificate it signs,
# both ECDSA P-256, with openssl, for tests and benchmarks:
#
#   scripts/gen-certs.sh [DIR] [NAME...]
#
# DIR (default target/certs) gets ca.pem/ca.key and server.pem (leaf then
# CA: the chain to serve) and server.key (PKCS#8). The server certificate is
# for NAME... (default: localhost 127.0.0.1 ::1), valid for 825 days.
# Trust ca.pem in clients: curl --cacert DIR/ca.pem, openssl s_client -CAfile.
set -euo pipefail

dir=${1:-target/certs}
shift || true
names=("$@")
((${#names[@]})) || names=(localhost 127.0.0.1 ::1)

mkdir -p "$dir"
cd "$dir"

san=""
for name in "${names[@]}"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
    san+="IP:$name,"
  else
    san+="DNS:$name,"
  fi
done
san=${san%,}

openssl ecparam -name prime256v1 -genkey -noout -out ca.ec.key
openssl pkcs8 -topk8 -nocrypt -in ca.ec.key -out ca.key
rm ca.ec.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=percore local CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

openssl ecparam -name prime256v1 -genkey -noout -out server.ec.key
openssl pkcs8 -topk8 -nocrypt -in server.ec.key -out server.key
rm server.ec.key
openssl req -new -key server.key -subj "/CN=${names[0]}" -out server.csr
cat > server.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 825 \
  -extfile server.ext -out server.leaf.pem 2>/dev/null
cat server.leaf.pem ca.pem > server.pem
rm server.csr server.ext server.leaf.pem ca.srl
echo "wrote $(pwd)/{ca.pem,ca.key,server.pem,server.key} for: ${names[*]}"
