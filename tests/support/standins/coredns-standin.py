#!/usr/bin/python3
# STAND-IN for CoreDNS, for forgectl's tests only: CoreDNS's image cannot be had here. It runs in
# the coredns pods that kubeadm deploys (an image built by tests/support/node_images.rs under
# CoreDNS's name) and answers A questions for Services (NAME.NAMESPACE.svc.DOMAIN → the
# Service's ClusterIP, read from the API with the pod's service account), over UDP and TCP on
# :53; NXDOMAIN for anything else. /health on :8080 and /ready on :8181 as CoreDNS serves them.
import http.server, json, os, socket, socketserver, ssl, struct, sys, threading, urllib.request

SA = "/var/run/secrets/kubernetes.io/serviceaccount"
API = "https://%s:%s" % (os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "443"))


def cluster_domain():
    # kubeadm's Corefile: `kubernetes cluster.local in-addr.arpa ip6.arpa {`.
    try:
        conf = sys.argv[sys.argv.index("-conf") + 1]
        for line in open(conf):
            words = line.split()
            if len(words) > 1 and words[0] == "kubernetes":
                return words[1].rstrip(".").lower()
    except (ValueError, IndexError, OSError):
        pass
    return "cluster.local"


DOMAIN = cluster_domain()
CTX = ssl.create_default_context(cafile=SA + "/ca.crt")


def service_ip(name):
    suffix = ".svc." + DOMAIN
    if not name.endswith(suffix):
        return None
    parts = name[: -len(suffix)].split(".")
    if len(parts) != 2:
        return None
    svc, ns = parts
    # CoreDNS's ClusterRole lets it list Services, not get one.
    req = urllib.request.Request("%s/api/v1/namespaces/%s/services?fieldSelector=metadata.name%%3D%s" % (API, ns, svc))
    req.add_header("Authorization", "Bearer " + open(SA + "/token").read().strip())
    try:
        with urllib.request.urlopen(req, context=CTX, timeout=3) as r:
            items = json.load(r).get("items") or [{}]
            ip = items[0].get("spec", {}).get("clusterIP")
            return ip if ip and ip != "None" else None
    except Exception:
        return None


def qname(msg, i):
    labels = []
    while msg[i]:
        n = msg[i]
        labels.append(msg[i + 1:i + 1 + n].decode())
        i += 1 + n
    return ".".join(labels), i + 1


def answer(msg):
    qid, flags = struct.unpack("!HH", msg[:4])
    name, end = qname(msg, 12)
    qtype, _ = struct.unpack("!HH", msg[end:end + 4])
    question = msg[12:end + 4]
    ip = service_ip(name.lower())
    rd = flags & 0x0100
    if ip and qtype == 1:
        rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(ip)
        return struct.pack("!HHHHHH", qid, 0x8400 | rd, 1, 1, 0, 0) + question + rr
    rcode = 0 if ip else 3
    return struct.pack("!HHHHHH", qid, 0x8400 | rd | rcode, 1, 0, 0, 0) + question


class Tcp(socketserver.BaseRequestHandler):
    def handle(self):
        head = self.request.recv(2, socket.MSG_WAITALL)
        if len(head) == 2:
            msg = self.request.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
            body = answer(msg)
            self.request.sendall(struct.pack("!H", len(body)) + body)


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(answer(data), self.client_address)


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *a):
        pass


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()


socketserver.ThreadingTCPServer.allow_reuse_address = True
serve(socketserver.ThreadingTCPServer(("0.0.0.0", 53), Tcp))
serve(socketserver.ThreadingUDPServer(("0.0.0.0", 53), Udp))
serve(http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Health))
http.server.ThreadingHTTPServer(("0.0.0.0", 8181), Health).serve_forever()
