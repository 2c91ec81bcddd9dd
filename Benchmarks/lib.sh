# Helpers shared by the benchmark scripts (sourced).

# make_certs DIR: a throwaway CA (DIR/ca.pem) and a server certificate for 127.0.0.1 (DIR/server.pem, DIR/server.key).
make_certs() {
  local dir="$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj "/CN=Switchboard benchmark CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$dir/leaf.ext"
  openssl x509 -req -days 2 -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -extfile "$dir/leaf.ext" -out "$dir/server.pem" 2>/dev/null
  openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null
}

# cpu_ticks PID...: user+system clock ticks used so far by these processes (those that still exist).
cpu_ticks() {
  local total=0 pid fields
  for pid in "$@"; do
    if [[ -r "/proc/$pid/stat" ]]; then
      # After the command name (which may hold spaces) utime and stime are the 12th and 13th fields.
      fields="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null)" || continue
      read -r -a f <<<"$fields"
      total=$((total + f[11] + f[12]))
    fi
  done
  echo "$total"
}
