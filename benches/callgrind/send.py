"""Sends N new single-alert Alertmanager webhooks over C keep-alive
connections (the same body shape as benches/wrk/alertmanager.lua), and
exits non-zero if any answer is not 200.

    python3 send.py PORT N [C]
"""
import http.client
import json
import sys
import threading
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
conns = int(sys.argv[3]) if len(sys.argv) > 3 else 16
day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
base = int(time.time() * 1000) % 10**12 * 1000


def body(i):
    svc = i % 50
    fp = "%016x" % (base + i)
    ms = (base + i) % 86400000
    starts = "%sT%02d:%02d:%02d.%03dZ" % (day, ms // 3600000, ms // 60000 % 60, ms // 1000 % 60, ms % 1000)
    inst = "10.%d.%d.%d:9100" % (i // 65536 % 256, i // 256 % 256, i % 256)
    labels = {"alertname": "BenchAlert", "instance": inst, "job": "node",
              "service": "svc-%d" % svc, "severity": "warning"}
    ann = {"summary": "BenchAlert on svc-%d" % svc,
           "description": "Synthetic alert %s on %s from the firstline intake benchmark." % (fp, inst)}
    return json.dumps({
        "version": "4", "groupKey": '{}:{alertname="BenchAlert", service="svc-%d"}' % svc,
        "truncatedAlerts": 0, "status": "firing", "receiver": "firstline",
        "groupLabels": {"alertname": "BenchAlert", "service": "svc-%d" % svc},
        "commonLabels": labels, "commonAnnotations": ann, "externalURL": "http://am:9093",
        "alerts": [{"status": "firing", "labels": labels, "annotations": ann, "startsAt": starts,
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom:9090/graph",
                    "fingerprint": fp}]})


refused = []


def worker(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for i in range(k, n, conns):
        c.request("POST", "/hooks/alertmanager", body(i), {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            refused.append(r.status)


threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if refused:
    sys.exit("%d of %d alerts refused: %s" % (len(refused), n, sorted(set(refused))))
