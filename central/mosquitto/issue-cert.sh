#!/bin/sh
# Issue the RoomWarden broker's certificates with openssl: one CA, the broker's server
# certificate, and one client certificate per identity, whose CN mosquitto takes as the MQTT
# username (use_identity_as_username) for the ACL in roomwarden.acl:
#
#   issue-cert.sh [--pki DIR] ca                                    DIR/ca.pem, .key, crl.pem
#   issue-cert.sh [--pki DIR] [--days N] broker NAME_OR_IP...       DIR/broker.pem, .key
#   issue-cert.sh [--pki DIR] [--days N] gateway SITE GATEWAY       CN "SITE/GATEWAY"
#       -> DIR/gateways/SITE/GATEWAY.pem, .key (install on that gateway only)
#   issue-cert.sh [--pki DIR] [--days N] central NAME               CN "NAME" (no "/")
#       -> DIR/central/NAME.pem, .key (ingest, operator, flasher: the ACL's user blocks)
#   issue-cert.sh [--pki DIR] revoke CERT.pem                       DIR/crl.pem again
#       (install it as the broker's crlfile and reload: that certificate connects no more)
#
# SITE, GATEWAY and NAME are config ids: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 64 characters.
# DIR defaults to ./pki. Issued certificates are valid N days (default 825), the CA and its
# revocation list (DIR/crl.pem) 3650. Private keys are written 0600 and never overwritten;
# the CA key signs every identity: keep it offline. See docs/broker-security.md.
set -eu
LC_ALL=C
export LC_ALL

PKI=./pki
DAYS=825
CA_DAYS=3650

die() { echo "issue-cert.sh: $*" >&2; exit 1; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --pki) [ $# -ge 2 ] || usage; PKI=$2; shift 2 ;;
    --days) [ $# -ge 2 ] || usage; DAYS=$2; shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
case "$DAYS" in ''|*[!0-9]*) die "--days wants a number of days, not '$DAYS'" ;; esac
command -v openssl >/dev/null 2>&1 || die "openssl is not installed (apt-get install openssl)"

check_id() {  # what value
  case "$2" in
    ''|[!A-Za-z0-9]*|*[!A-Za-z0-9_.-]*) bad=1 ;;
    *) bad=0 ;;
  esac
  if [ "$bad" = 1 ] || [ "${#2}" -gt 64 ]; then
    die "$1 '$2' is not a valid id ([A-Za-z0-9][A-Za-z0-9_.-]*, at most 64 characters)"
  fi
}

umask 077
CA_CERT=$PKI/ca.pem
CA_KEY=$PKI/ca.key

need_ca() {
  if [ ! -f "$CA_CERT" ] || [ ! -f "$CA_KEY" ]; then
    die "no CA in $PKI (run: $0 --pki $PKI ca)"
  fi
}

# crl: DIR/crl.pem from the CA's database of revoked certificates (openssl ca)
crl() {
  cnf=$PKI/ca.cnf
  printf '[ca]\ndefault_ca = rw\n[rw]\ndatabase = %s\ncrlnumber = %s\n%s\n%s\n%s\n' \
    "$PKI/index.txt" "$PKI/crlnumber" "default_md = sha256" "default_crl_days = $CA_DAYS" \
    "unique_subject = no" > "$cnf"
  [ -f "$PKI/index.txt" ] || : > "$PKI/index.txt"
  [ -f "$PKI/crlnumber" ] || echo 01 > "$PKI/crlnumber"
  if [ $# -eq 1 ]; then
    openssl ca -config "$cnf" -revoke "$1" -keyfile "$CA_KEY" -cert "$CA_CERT" 2>/dev/null \
      || die "openssl ca could not revoke $1 (not a certificate of this CA?)"
  fi
  openssl ca -config "$cnf" -gencrl -keyfile "$CA_KEY" -cert "$CA_CERT" \
    -out "$PKI/crl.pem" 2>/dev/null || die "openssl ca could not write $PKI/crl.pem"
  chmod 0644 "$PKI/crl.pem"
  echo "$PKI/crl.pem"
}

# new_key_and_csr BASE SUBJECT: an EC P-256 key (BASE.key) and a request (BASE.csr)
new_key_and_csr() {
  if [ -e "$1.key" ] || [ -e "$1.pem" ]; then
    die "$1.key or $1.pem exists; not overwritten"
  fi
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null || die "openssl req failed for $1"
}

# sign BASE EXTENSIONS: BASE.csr signed by the CA into BASE.pem
sign() {
  ext=$1.ext
  printf '%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n%s\n%s\n' \
    "$2" "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" > "$ext"
  openssl x509 -req -in "$1.csr" -CA "$CA_CERT" -CAkey "$CA_KEY" -CAcreateserial \
    -out "$1.pem" -days "$DAYS" -sha256 -extfile "$ext" 2>/dev/null \
    || { rm -f "$1.key" "$1.csr" "$ext"; die "openssl x509 failed for $1"; }
  rm -f "$1.csr" "$ext"
  chmod 0644 "$1.pem"
  echo "$1.pem"
  echo "$1.key"
}

[ $# -ge 1 ] || usage
what=$1
shift
mkdir -p "$PKI"
case "$what" in
  ca)
    [ $# -eq 0 ] || usage
    [ ! -e "$CA_KEY" ] || die "$CA_KEY exists; not overwritten"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$CA_KEY" -out "$CA_CERT" -days "$CA_DAYS" -sha256 \
      -subj "/CN=RoomWarden MQTT CA" \
      -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || die "openssl failed"
    chmod 0644 "$CA_CERT"
    echo "$CA_CERT"
    echo "$CA_KEY"
    crl
    ;;
  broker)
    [ $# -ge 1 ] || die "broker wants the names or IP addresses clients connect to"
    need_ca
    san=""
    for name in "$@"; do
      case "$name" in
        *[!0-9.]*) case "$name" in *:*) entry="IP:$name" ;; *) entry="DNS:$name" ;; esac ;;
        *) entry="IP:$name" ;;
      esac
      san="${san:+$san,}$entry"
    done
    new_key_and_csr "$PKI/broker" "/CN=$1"
    sign "$PKI/broker" "subjectAltName=$san
extendedKeyUsage=serverAuth"
    ;;
  gateway)
    [ $# -eq 2 ] || die "gateway wants SITE GATEWAY (the config's gateway.site and gateway.id)"
    check_id site "$1"
    check_id gateway "$2"
    need_ca
    mkdir -p "$PKI/gateways/$1"
    # The CN is "SITE/GATEWAY"; "\/" keeps openssl from reading the "/" as a new attribute.
    new_key_and_csr "$PKI/gateways/$1/$2" "/CN=$1\\/$2"
    sign "$PKI/gateways/$1/$2" "extendedKeyUsage=clientAuth"
    ;;
  central)
    [ $# -eq 1 ] || die "central wants one NAME (ingest, operator, flasher, or your own)"
    check_id name "$1"
    need_ca
    mkdir -p "$PKI/central"
    new_key_and_csr "$PKI/central/$1" "/CN=$1"
    sign "$PKI/central/$1" "extendedKeyUsage=clientAuth"
    case "$1" in
      ingest|operator|flasher) ;;
      *) echo "note: add a 'user $1' block to roomwarden.acl (copy the operator's or" \
              "the flasher's lines), or $1 may do nothing" >&2 ;;
    esac
    ;;
  revoke)
    [ $# -eq 1 ] || die "revoke wants the certificate file to revoke"
    [ -f "$1" ] || die "no certificate $1"
    need_ca
    openssl verify -CAfile "$CA_CERT" "$1" >/dev/null 2>&1 \
      || die "$1 is not a valid certificate of the CA in $PKI"
    if openssl x509 -in "$1" -noout -ext basicConstraints 2>/dev/null | grep -q "CA:TRUE"; then
      die "$1 is a CA certificate; revoke identities, not the CA"
    fi
    crl "$1"
    ;;
  *) usage ;;
esac
