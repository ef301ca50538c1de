#!/bin/bash
# TEST DOUBLE — not the real tool. Stands in for kubeadm, kubelet, kubectl and crictl (it acts by the
# name it is installed as) in forgectl's tests on local machines, where the real binaries cannot be
# obtained. It records every call in /var/log/forgectl-test-doubles/calls.log, checks what the real
# tool would check of what forgectl gives it, and writes the files the real tool would write
# (kubeconfigs with real certificates from the cluster CA, static pod manifests, kubelet files).
# The tests fill in the versions before serving it.
set -u
version='@KUBE_VERSION@'
crictl_version='@CRICTL_VERSION@'
tool=$(basename "$0")
log=/var/log/forgectl-test-doubles
state=/var/lib/forgectl-test-doubles
mkdir -p "$log" "$state"
printf '%s\t%s\n' "$tool" "$*" >> "$log/calls.log"
pki=/etc/kubernetes/pki

fail() { echo "$tool (test double): $*" >&2; exit 1; }

# The value of `key:` in a kubeadm configuration file (first match, quotes dropped).
conf() { sed -n "s/^ *$2: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *\$/\1/p" "$1" | head -n 1; }

# kubeconfig FILE USER ORG: a client certificate signed by the cluster CA, as kubeadm makes them.
kubeconfig() {
    local file=$1 user=$2 org=$3 server=$4 d
    d=$(mktemp -d)
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/O=$org/CN=$user" \
        -keyout "$d/k" -out "$d/csr" 2>/dev/null || fail "openssl req failed"
    # An X.509 v3 client certificate, as kubeadm makes them (TLS stacks refuse v1 certificates).
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > "$d/ext"
    openssl x509 -req -in "$d/csr" -CA $pki/ca.crt -CAkey $pki/ca.key -CAcreateserial -days 365 \
        -extfile "$d/ext" -out "$d/c" 2>/dev/null || fail "openssl x509 failed (is $pki/ca.key there?)"
    umask 077
    cat > "$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: $(base64 -w0 $pki/ca.crt)
    server: https://$server
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: $user
  name: $user@kubernetes
current-context: $user@kubernetes
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$d/c")
    client-key-data: $(base64 -w0 "$d/k")
KUBECONFIG
    rm -rf "$d"
}

# What kubeadm's preflight checks of an external etcd: every endpoint answers over mTLS with the
# apiserver-etcd-client certificate, at etcd >= 3.5.24, unless ExternalEtcdVersion is ignored.
check_etcd() {
    local file=$1 ep v
    for f in etcd/ca.crt apiserver-etcd-client.crt apiserver-etcd-client.key; do
        test -f "$pki/$f" || fail "[preflight] external etcd: $pki/$f is missing"
    done
    for ep in $(sed -n 's/^ *- \(https:\/\/.*:2379\)$/\1/p' "$file"); do
        v=$(curl -s --max-time 5 --cacert $pki/etcd/ca.crt --cert $pki/apiserver-etcd-client.crt \
            --key $pki/apiserver-etcd-client.key "$ep/version" | sed -n 's/.*"etcdserver":"\([^"]*\)".*/\1/p')
        test -n "$v" || fail "[preflight] external etcd $ep does not answer over mTLS"
        if [ "$(printf '%s\n' "$v" 3.5.24 | sort -V | head -n 1)" != 3.5.24 ] &&
            ! grep -q -- '- ExternalEtcdVersion' "$file"; then
            fail "[preflight] ExternalEtcdVersion: this version of kubeadm only supports external etcd version >= 3.5.24. Current version: $v"
        fi
    done
}

control_plane_files() {
    local endpoint=$1
    mkdir -p /etc/kubernetes/manifests /var/lib/kubelet
    for c in kube-apiserver kube-controller-manager kube-scheduler; do
        printf '# TEST DOUBLE static pod manifest of %s (kubeadm double)\napiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: kube-system\n' \
            "$c" "$c" > /etc/kubernetes/manifests/$c.yaml
    done
    kubeconfig /etc/kubernetes/admin.conf kubernetes-admin kubeadm:cluster-admins "$endpoint"
    kubeconfig /etc/kubernetes/super-admin.conf kubernetes-super-admin system:masters "$endpoint"
}

kubelet_files() {
    mkdir -p /var/lib/kubelet
    printf 'apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n' > /var/lib/kubelet/config.yaml
    printf 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock"\n' > /var/lib/kubelet/kubeadm-flags.env
    printf '# TEST DOUBLE kubelet kubeconfig\n' > /etc/kubernetes/kubelet.conf
    systemctl restart kubelet.service 2>/dev/null || true
}

case "$tool $*" in
"kubeadm version -o short")
    echo "v$version" ;;
"kubelet --version")
    echo "Kubernetes v$version" ;;
"kubectl version --client -o json")
    printf '{\n  "clientVersion": {\n    "gitVersion": "v%s"\n  }\n}\n' "$version" ;;
"crictl --version")
    echo "crictl version v$crictl_version" ;;
"kubeadm init --config "*)
    file=$3
    test -f "$file" || fail "open $file: no such file or directory"
    grep -q '^kind: ClusterConfiguration' "$file" || fail "$file has no ClusterConfiguration"
    test -f /etc/kubernetes/admin.conf && fail "[preflight] /etc/kubernetes/admin.conf already exists (kubeadm init ran before)"
    for f in ca.crt ca.key front-proxy-ca.crt front-proxy-ca.key sa.key sa.pub; do
        test -f "$pki/$f" || fail "expected the pre-made $pki/$f (forgectl keeps the CAs)"
    done
    check_etcd "$file"
    endpoint=$(conf "$file" controlPlaneEndpoint)
    test -n "$endpoint" || fail "no controlPlaneEndpoint in $file"
    control_plane_files "$endpoint"
    kubelet_files
    echo "Your Kubernetes control-plane has initialized successfully! (test double)" ;;
"kubeadm token create "*)
    token="$(tr -dc a-z0-9 < /dev/urandom | head -c 6).$(tr -dc a-z0-9 < /dev/urandom | head -c 16)"
    echo "$token" >> "$state/tokens"
    echo "$token" ;;
"kubeadm token delete "*)
    grep -qx "$3" "$state/tokens" 2>/dev/null || fail "bootstrap token \"${3%%.*}\" not found"
    grep -vx "$3" "$state/tokens" > "$state/tokens.new"; mv "$state/tokens.new" "$state/tokens"
    echo "bootstrap token \"${3%%.*}\" deleted" ;;
"kubeadm join --config "*)
    file=$3
    test -f "$file" || fail "open $file: no such file or directory"
    test -f /etc/forgectl-test-doubles/fail-join && fail "error execution phase preflight: told to fail by /etc/forgectl-test-doubles/fail-join"
    token=$(conf "$file" token)
    [[ $token =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]] || fail "the token in $file is not a bootstrap token"
    hash=$(sed -n 's/^ *- "\(sha256:[0-9a-f]\{64\}\)"$/\1/p' "$file")
    test -n "$hash" || fail "no caCertHashes in $file"
    endpoint=$(conf "$file" apiServerEndpoint)
    if grep -q '^controlPlane:' "$file"; then
        for f in ca.crt ca.key front-proxy-ca.crt sa.key etcd/ca.crt apiserver-etcd-client.crt; do
            test -f "$pki/$f" || fail "[preflight] control-plane join: $pki/$f is missing (no certificate key given)"
        done
        control_plane_files "$endpoint"
    fi
    kubelet_files
    echo "This node has joined the cluster (test double)" ;;
"kubectl --kubeconfig "*" get --raw=/readyz")
    test -f /etc/kubernetes/manifests/kube-apiserver.yaml || fail "The connection to the server was refused"
    echo ok ;;
kubelet*)
    # As the service: like the real kubelet, exit until kubeadm init / join wrote its configuration.
    if [ ! -f /var/lib/kubelet/config.yaml ]; then
        echo "kubelet: /var/lib/kubelet/config.yaml missing (kubeadm init / join writes it)" >&2
        exit 1
    fi
    # "Runs" the kube-apiserver static pod: a TCP forwarder from :6443 to the real kube-apiserver
    # the test started on the host (tests/support/kube.rs), whose address the test writes here.
    target=/etc/forgectl-test-doubles/apiserver
    if [ -f /etc/kubernetes/manifests/kube-apiserver.yaml ] && [ -f $target ]; then
        exec socat TCP-LISTEN:6443,fork,reuseaddr "TCP:$(cat $target)"
    fi
    exec sleep infinity ;;
*)
    echo "$tool (forgectl test double): '$*' is not simulated" >&2
    exit 64 ;;
esac
