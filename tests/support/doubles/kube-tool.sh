#!/bin/bash
# TEST DOUBLE — not the real tool. Stands in for kubeadm, kubelet, kubectl and crictl (it acts by the
# name it is installed as) in forgectl's tests on local machines, where the real binaries cannot be
# obtained. It records every call in /var/log/forgectl-test-doubles/calls.log and answers the way the
# real tool does for what forgectl asks of it. The tests fill in the versions before serving it.
set -u
version='@KUBE_VERSION@'
crictl_version='@CRICTL_VERSION@'
tool=$(basename "$0")
log=/var/log/forgectl-test-doubles
mkdir -p "$log"
printf '%s\t%s\n' "$tool" "$*" >> "$log/calls.log"
case "$tool $*" in
"kubeadm version -o short")
    echo "v$version" ;;
"kubelet --version")
    echo "Kubernetes v$version" ;;
"kubectl version --client -o json")
    printf '{\n  "clientVersion": {\n    "gitVersion": "v%s"\n  }\n}\n' "$version" ;;
"crictl --version")
    echo "crictl version v$crictl_version" ;;
kubelet*)
    # As the service: like the real kubelet, exit until kubeadm init / join wrote its configuration.
    if [ ! -f /var/lib/kubelet/config.yaml ]; then
        echo "kubelet: /var/lib/kubelet/config.yaml missing (kubeadm init / join writes it)" >&2
        exit 1
    fi
    exec sleep infinity ;;
*)
    echo "$tool (forgectl test double): '$*' is not simulated" >&2
    exit 64 ;;
esac
