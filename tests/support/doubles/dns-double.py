#!/usr/bin/python3
# TEST DOUBLE of the cluster DNS (CoreDNS), for forgectl's tests only: there is no real cluster
# here. Answers DNS over TCP on ADDRESS:53 with an A record for each NAME=IP given, NXDOMAIN
# for anything else; logs each question to /var/log/forgectl-test-doubles/dns.log.
# Usage: dns-double.py ADDRESS NAME=IP...
import socket, socketserver, struct, sys

ADDRESS = sys.argv[1]
RECORDS = {k.rstrip(".").lower(): v for k, v in (a.split("=", 1) for a in sys.argv[2:])}


def qname(msg, i):
    labels = []
    while msg[i]:
        n = msg[i]
        labels.append(msg[i + 1:i + 1 + n].decode())
        i += 1 + n
    return ".".join(labels), i + 1


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        head = self.request.recv(2, socket.MSG_WAITALL)
        if len(head) < 2:
            return
        msg = self.request.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
        qid, flags = struct.unpack("!HH", msg[:4])
        name, end = qname(msg, 12)
        qtype, _ = struct.unpack("!HH", msg[end:end + 4])
        question = msg[12:end + 4]
        with open("/var/log/forgectl-test-doubles/dns.log", "a") as log:
            log.write(f"{name} {qtype}\n")
        ip = RECORDS.get(name.lower())
        rd = flags & 0x0100
        if ip and qtype == 1:
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(ip)
            body = struct.pack("!HHHHHH", qid, 0x8400 | rd, 1, 1, 0, 0) + question + answer
        else:
            rcode = 0 if ip else 3
            body = struct.pack("!HHHHHH", qid, 0x8400 | rd | rcode, 1, 0, 0, 0) + question
        self.request.sendall(struct.pack("!H", len(body)) + body)


socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer((ADDRESS, 53), Handler).serve_forever()
